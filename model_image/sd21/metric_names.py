"""Names of the metrics the autoscaler reads, in one place with no dependencies:
the server and the gateway export them, and the CDK app builds its queries from
them at synth time (where the serving libraries are not needed)."""

# Server: requests admitted and not finished (queued + running), per pod.
INFLIGHT_REQUESTS = "sd21_inflight_requests"
# Gateway (scale-to-zero mode): every request it received for forwarding, and
# those it answered 503 because no inference pod was ready.
GATEWAY_RECEIVED = "sd21_gateway_received_requests_total"
GATEWAY_COLD = "sd21_gateway_cold_requests_total"
# Gateway: requests it holds now, waiting for a replica to become ready (a gauge).
GATEWAY_HELD = "sd21_gateway_held_requests"
# Gateway: the last cold start, from the first request that found no replica to the first answer.
GATEWAY_LAST_COLD_START = "sd21_gateway_last_cold_start_seconds"

# CloudWatch: what the server and the gateway publish (sd21.cloudwatch), and what the
# dashboard and alarms (stacks/observability) read. One dimension, the cluster name
# (SD21_CLOUDWATCH_CLUSTER); errors also by Kind (the API's error types).
CLOUDWATCH_NAMESPACE = "SD21"
CLOUDWATCH_CLUSTER_DIMENSION = "Cluster"
CLOUDWATCH_KIND_DIMENSION = "Kind"
CW_REQUESTS = "Requests"            # generation requests that passed validation
CW_IMAGES = "Images"
CW_ERRORS = "Errors"                # by Kind: overloaded, timeout, internal, unhealthy, draining, not_ready, ...
CW_LATENCY = "Latency"              # seconds, admission to response (as the histogram's bucket bounds)
CW_QUEUE_DEPTH = "QueueDepth"
CW_READY = "ReadyReplicas"          # each ready server publishes 1 per period: Sum = ready replicas
CW_DEVICE_FAILURES = "DeviceFailures"
CW_GATEWAY_REQUESTS = "GatewayRequests"
CW_COLD_START = "ColdStartSeconds"  # by Phase: stage, load, warmup, stage_to_ready (gauges per replica)
CLOUDWATCH_PHASE_DIMENSION = "Phase"
CW_COLD_REQUESTS = "ColdRequests"   # answered 503 by the gateway: no replica was ready
CW_HELD_REQUESTS = "HeldRequests"   # held by the gateway at that moment, waiting for a replica
CW_COLD_START_TOTAL = "ColdStartTotalSeconds"  # the gateway's last cold start, wanted -> first answer
