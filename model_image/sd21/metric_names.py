"""Names of the metrics the autoscaler reads, in one place with no dependencies:
the server and the gateway export them, and the CDK app builds its queries from
them at synth time (where the serving libraries are not needed)."""

# Server: requests admitted and not finished (queued + running), per pod.
INFLIGHT_REQUESTS = "sd21_inflight_requests"
# Gateway (scale-to-zero mode): every request it received for forwarding, and
# those it answered 503 because no inference pod was ready.
GATEWAY_RECEIVED = "sd21_gateway_received_requests_total"
GATEWAY_COLD = "sd21_gateway_cold_requests_total"
