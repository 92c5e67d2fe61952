"""Asynchronous jobs: the SQS queue and its dead-letter queue, the SNS topic announcing
finished jobs, and who may do what with them (model_image/sd21/jobs.py is the runtime)."""
