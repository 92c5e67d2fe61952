"""What the infrastructure (the CDK app) and the runtime (the image) both use, in a
module that imports nothing: the CDK app installs this package without its runtime
dependencies, so whatever it imports from sd21 must be standard library only
(tests/unit/test_import_graph.py walks the imports to keep it so).

The environment of each process (`ServerEnv`, `GatewayEnv`, ...: `to_env()` for the charts,
`from_env()` for the entrypoints) is in `environment`; `python -m sd21.contract` prints it
as model_image/README.md's table."""

# Every error type the server answers with (the `error.type` of each 4xx/5xx). The
# metrics count errors by these (sd21_errors{kind}; CloudWatch Errors, Kind), and the
# dashboard draws one line each.
SERVER_ERROR_TYPES = ("invalid_request", "model_not_found", "not_found", "method_not_allowed", "request_too_large",
                      "overloaded", "not_ready", "draining", "unhealthy", "timeout", "internal")
# The gateway's own, at scale to zero (it counts them as cold requests, not sd21_errors).
GATEWAY_ERROR_TYPES = ("warming_up", "upstream_error", "upstream_timeout")
# The published enum: a client may get any of them.
ERROR_TYPES = SERVER_ERROR_TYPES + GATEWAY_ERROR_TYPES

# Generation defaults of the API; the cost estimate is made at DEFAULT_STEPS.
DEFAULT_STEPS = 25
DEFAULT_GUIDANCE_SCALE = 7.5

# Async jobs' requests, status and images live under this key prefix of the model bucket.
JOBS_PREFIX = "jobs/"

# The file sd21-mirror-weights writes beside mirrored weights, which the compile Job
# verifies and the preflight reads.
WEIGHTS_MANIFEST = "weights-manifest.json"

from .environment import (  # noqa: E402 - the names above need nothing from it
    PROCESSES, BenchmarkEnv, CloudWatchEnv, ColdStartMetricsEnv, CompileEnv, GatewayEnv, JobsEnv, MirrorWeightsEnv,
    ServerEnv, StageEnv, environment_table,
)
from .variable import ContractError, Env, Var  # noqa: E402
