"""python -m tools.dev.demo: the real server on CPU with a tiny random pipeline (no weights).

Builds tiny weights, compiles (cpu trace), uploads to a loopback S3, stages and
serves: API on http://127.0.0.1:<port>/docs, UI on http://127.0.0.1:<port>/ui.
Images are noise-like: the weights are random. Ctrl-C drains and exits.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from sd21.contract import ServerEnv
from sd21.env import read


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.dev.demo", description=__doc__)
    parser.add_argument("--port", type=int, default=read(ServerEnv).port)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)

    from sd21 import server
    from tools.dev import localstack

    s3 = localstack.start_s3()
    try:
        with tempfile.TemporaryDirectory(prefix="sd21-demo-") as workdir:
            model_dir, version = localstack.compile_and_stage(Path(workdir))
            return server.main(["--backend", "cpu", "--model-dir", str(model_dir), "--model-version", version,
                                "--host", args.host, "--port", str(args.port), "--drain-grace-s", "10"])
    finally:
        s3.stop()


if __name__ == "__main__":
    raise SystemExit(main())
