"""The cost figures from their inputs (tools.cost.cost_lines), computed by hand here."""
from tools.cost import cost_lines

DEFAULTS = {"on_demand": 0.758, "spot": None, "min_replicas": 1, "system_nodes": 2, "system_instance_type": "m7i.large"}


def _text(**inputs) -> str:
    return "\n".join(cost_lines(**{**DEFAULTS, **inputs}))


def test_on_demand_cost_per_thousand_images_is_the_price_over_the_benchmark_throughput():
    text = _text(on_demand=0.758)
    # 0.758 $/h / (0.596 images/s * 3600 s/h) * 1000
    assert "$ per 1000 images at full load, on-demand: $0.353 at 50 steps" in text
    assert "0.596 images/s at 50 steps (the Neuron 2.21.0 benchmark row; 2.18.0 gave 0.604)" in text
    assert "(estimate" in text and "spot: set inf2XlargeSpotHourlyUsd" in text


def test_spot_is_priced_when_given():
    text = _text(spot=0.3)
    # $0.3/h over 0.596 images/s: 1000 images take 1678 s, i.e. $0.140.
    assert "$ per 1000 images at full load, spot: $0.140 at 50 steps" in text
    assert "$0.300/h spot (a setting: spot prices move)" in text


def test_idle_cost_is_the_minimum_replicas_and_zero_at_zero():
    text = _text(on_demand=1.0, min_replicas=2, system_nodes=3, system_instance_type="m7i.xlarge")
    assert "idle cost with minReplicas=2: $2.000/h, $1,460/month on-demand" in text
    assert "3 x m7i.xlarge" in text
    assert "idle cost with minReplicas=0 (scale to zero): $0/h for inf2" in text
    at_zero = _text(min_replicas=0)
    assert "idle cost with minReplicas=0: $0.000/h, $0/month" in at_zero
    assert "(scale to zero)" not in at_zero
