"""Cost of the endpoint, derived from the settings (run: python -m stacks.workload.cost).

Throughput is the Neuron SDK's published benchmark for Stable Diffusion 2.1
512x512 on inf2.xlarge; the hourly price is a setting (on-demand, us-east-1 by default).
"""
import sys

NEURON_BENCHMARK_IMAGES_PER_SECOND = 0.604
HOURS_PER_MONTH = 730


def cost_lines(settings) -> list[str]:
    price = settings.inf2_xlarge_hourly_usd
    per_thousand = price / (NEURON_BENCHMARK_IMAGES_PER_SECOND * 3600) * 1000
    idle_hourly = price * settings.min_replicas
    return [
        f"inf2.xlarge: ${price:.3f}/h, {NEURON_BENCHMARK_IMAGES_PER_SECOND} images/s (Neuron benchmark, SD2.1 512x512)",
        f"cost per 1000 images at full load: ${per_thousand:.3f}",
        f"idle cost with minReplicas={settings.min_replicas}: ${idle_hourly:.3f}/h, "
        f"${idle_hourly * HOURS_PER_MONTH:,.0f}/month (inf2 nodes only; add the system node group)",
    ]


def main() -> int:
    from app import default_context
    from stacks.settings import Settings, SettingsError

    try:
        settings = Settings.from_context(default_context())
    except SettingsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print("\n".join(cost_lines(settings)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
