"""Preflight: read-only checks of the outside world before anything is created.

`make preflight` (and the release pipeline's Preflight step, before the first change
set) runs `python -m tools.preflight`: inf2 offered in the VPC's zones, the Inf vCPU
quota, the CodeConnections connection, the SSM parameter of the node AMI alias for the
cluster's Kubernetes version, the account's Lambda concurrency against what a stack's
deploy runs at once, every image and chart the synthesized app pulls in its registry, and
the weights source. Each failure is one line saying what to do; a registry that could not
be asked is a WARN line (a failure with preflightUnknownIsFatal); the exit code is 1 if any
check failed.
"""
