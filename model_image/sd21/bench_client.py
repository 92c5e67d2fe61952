"""sd21-benchmark: drive an endpoint with C concurrent clients for N requests.

Prints p50/p90/p99 latency, images per second and errors by kind. A separate
client tool: the server has no benchmark endpoint.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import statistics
import time

from .contract import DEFAULT_STEPS, BenchmarkEnv
from .env import read


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


async def drive(url: str, concurrency: int, requests: int, body: dict, timeout: float) -> dict:
    import httpx

    latencies: list[float] = []
    errors: collections.Counter = collections.Counter()
    remaining = iter(range(requests))

    async def worker(client):
        for _ in remaining:
            started = time.perf_counter()
            try:
                response = await client.post(url, json=body)
            except httpx.HTTPError as error:
                errors[type(error).__name__] += 1
                continue
            if response.status_code == 200:
                latencies.append(time.perf_counter() - started)
            else:
                try:
                    kind = response.json()["error"]["type"]
                except Exception:  # noqa: BLE001 - non-JSON error body
                    kind = "unknown"
                errors[f"{response.status_code} {kind}"] += 1

    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=timeout) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    wall = time.perf_counter() - started
    return {"latencies": latencies, "errors": dict(errors), "wall_s": wall,
            "images_per_s": len(latencies) / wall if wall else 0.0}


def report(result: dict) -> str:
    lat = result["latencies"]
    lines = [
        f"ok {len(lat)}  errors {sum(result['errors'].values())}  wall {result['wall_s']:.2f}s  "
        f"images/s {result['images_per_s']:.3f}",
        f"latency s: p50 {percentile(lat, 50):.3f}  p90 {percentile(lat, 90):.3f}  p99 {percentile(lat, 99):.3f}"
        + (f"  mean {statistics.fmean(lat):.3f}" if lat else ""),
    ]
    lines += [f"  error {kind}: {count}" for kind, count in sorted(result["errors"].items())]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="sd21-benchmark", description=__doc__)
    parser.add_argument("--url", default=read(BenchmarkEnv).url, help="base URL of the endpoint")
    parser.add_argument("--concurrency", "-c", type=int, default=8)
    parser.add_argument("--requests", "-n", type=int, default=32)
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--prompt", default="a photo of an astronaut riding a horse on mars")
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args(argv)
    if args.concurrency < 1 or args.requests < 1:
        parser.error("--concurrency and --requests must be at least 1")
    body = {"prompt": args.prompt, "steps": args.steps, "response_format": "png"}
    result = asyncio.run(drive(args.url.rstrip("/") + "/v1/images/generations", args.concurrency,
                               args.requests, body, args.timeout))
    print(report(result))
    return 0 if result["latencies"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
