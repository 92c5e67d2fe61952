"""HTTP headers the server and the gateway agree on (no dependencies: both images import it)."""

# On a 503 from a replica that produced nothing for the request and will not (its device
# is unhealthy, or it is draining): safe to send again to another replica. The gateway does.
REFUSED_HEADER = "X-SD21-Refused"
