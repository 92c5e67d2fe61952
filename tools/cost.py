"""Cost of the endpoint, derived from the settings (run: python -m tools.cost).

Throughput is the Neuron SDK's newest published benchmark for Stable Diffusion 2.1
512x512 on inf2.xlarge: aws-neuron/aws-neuron-sdk general/benchmarks/inf2/latency_data_vision_sd.csv
at commit 752349fd3de5aaa6eb69690955eeaa7d43fcd082, the Neuron 2.21.0 row (PyTorch 2.5,
batch 1, 0.596 images/s, p50 1679.8 ms, p99 1685.4 ms), measured by
src/benchmark/pytorch/sd2_512_benchmark.py, which calls the pipeline with diffusers'
default of 50 steps (DPM-Solver++). Older rows, in throughput_data_vision_sd.csv: 0.604
(2.18.0, PyTorch 2.1, commit 23da8895c65c3d4daed321e0684a98f0545885fc), 0.562 and 0.549
(2.17.0). Nothing here was measured on inf2: the figure for the endpoint's default step
count is an estimate (the 50-step time scaled by steps, which leaves out that the text
encoder and the VAE do not shrink with fewer steps).
"""
import sys

from sd21.contract import DEFAULT_STEPS

BENCHMARK_IMAGES_PER_SECOND = 0.596
BENCHMARK_STEPS = 50
BENCHMARK_SOURCE = "the Neuron 2.21.0 benchmark row; 2.18.0 gave 0.604"
HOURS_PER_MONTH = 730


def _per_thousand(hourly_usd: float, images_per_second: float) -> float:
    return hourly_usd / (images_per_second * 3600) * 1000


def cost_lines(*, on_demand: float, spot: float | None, min_replicas: int, system_nodes: int,
               system_instance_type: str) -> list[str]:
    """The figures, from inf2.xlarge's hourly prices (USD; spot unset: None) and the replicas
    and system nodes that run when idle."""
    estimated = BENCHMARK_IMAGES_PER_SECOND * BENCHMARK_STEPS / DEFAULT_STEPS
    prices = [("on-demand", on_demand)] + ([("spot", spot)] if spot else [])
    lines = [f"inf2.xlarge: ${on_demand:.3f}/h on-demand" + (f", ${spot:.3f}/h spot (a setting: spot prices move)"
                                                              if spot else ", spot: set inf2XlargeSpotHourlyUsd"),
             f"throughput: {BENCHMARK_IMAGES_PER_SECOND} images/s at {BENCHMARK_STEPS} steps ({BENCHMARK_SOURCE}); "
             f"about {estimated:.2f} images/s at the default {DEFAULT_STEPS} steps (estimate, not measured on inf2)"]
    for name, price in prices:
        lines.append(f"$ per 1000 images at full load, {name}: ${_per_thousand(price, BENCHMARK_IMAGES_PER_SECOND):.3f} "
                     f"at {BENCHMARK_STEPS} steps, ~${_per_thousand(price, estimated):.3f} at {DEFAULT_STEPS} steps "
                     "(estimate)")
    idle = on_demand * min_replicas
    lines.append(f"idle cost with minReplicas={min_replicas}: ${idle:.3f}/h, "
                 f"${idle * HOURS_PER_MONTH:,.0f}/month on-demand (inf2 nodes only; add the system node group: "
                 f"{system_nodes} x {system_instance_type})")
    if min_replicas:  # not at zero already: what zero would cost
        lines.append("idle cost with minReplicas=0 (scale to zero): $0/h for inf2; the system nodes and the gateway "
                     "stay")
    return lines


def main() -> int:
    from stacks.settings import default_context
    from stacks.settings import Settings, SettingsError

    try:
        settings = Settings.from_context(default_context())
    except SettingsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print("\n".join(cost_lines(
        on_demand=settings.endpoint.inf2_xlarge_hourly_usd, spot=settings.endpoint.inf2_xlarge_spot_hourly_usd,
        min_replicas=settings.endpoint.min_replicas, system_nodes=settings.cluster.system_node_desired_size,
        system_instance_type=settings.cluster.system_node_instance_type)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
