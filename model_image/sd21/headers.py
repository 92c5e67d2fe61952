"""HTTP headers and limits the server and the gateway agree on (no dependencies: both images import it)."""

# On a 503 from a replica that produced nothing for the request and will not (its device
# is unhealthy, or it is draining): safe to send again to another replica. The gateway does.
REFUSED_HEADER = "X-SD21-Refused"

# A generation request is a small JSON document (two prompts of at most 1000 characters):
# larger bodies are refused with 413 before they are read into memory.
MAX_BODY_BYTES = 1 << 20
