"""The dashboard and alarms as text, read from a synthesized template (docs/operating.md shows it):

    python -m tools.dashboard cdk.out/Sd21-Workload.template.json
"""
from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

CHARS_PER_COLUMN = 4  # the dashboard grid is 24 columns wide


def _joined(value) -> str:
    """A CloudFormation string (maybe an Fn::Join with Refs) as text, tokens as ${Name}."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(_joined(part) for part in parts)
    if isinstance(value, dict) and "Ref" in value:
        return "${" + value["Ref"].removeprefix("AWS::") + "}"
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return "${" + ".".join(value["Fn::GetAtt"]) + "}"
    raise ValueError(f"cannot render {value!r}")


def dashboard_body(template: dict) -> dict:
    (body,) = [r["Properties"]["DashboardBody"] for r in template["Resources"].values()
               if r["Type"] == "AWS::CloudWatch::Dashboard"]
    return json.loads(_joined(body))


def metric_lines(properties: dict) -> list[str]:
    """One line per visible metric or expression: its label (the alarms list says what it reads)."""
    lines = []
    for entry in properties.get("metrics", []):
        options = entry[-1] if isinstance(entry[-1], dict) else {}
        if options.get("visible") is False:
            continue
        axis = " (right axis)" if options.get("yAxis") == "right" else ""
        if "expression" in options:
            lines.append(f"~ {options.get('label', options['expression'])}{axis}")
            continue
        namespace, name, *_ = [part for part in entry if not isinstance(part, dict)]
        source = "" if namespace == "SD21" else f" [{namespace}]"
        lines.append(f"~ {options.get('label', name)}{source}{axis}")
    for annotation in properties.get("annotations", {}).get("horizontal", []):
        lines.append(f"line at {annotation['value']}: {annotation.get('label', '')}")
    if "alarms" in properties:
        lines.append(f"{len(properties['alarms'])} alarms, their states")
    return lines


def render_dashboard(body: dict) -> str:
    rows: dict[int, list[dict]] = {}
    for widget in body["widgets"]:
        rows.setdefault(widget["y"], []).append(widget)
    out = []
    for y in sorted(rows):
        boxes = []
        for widget in sorted(rows[y], key=lambda w: w["x"]):
            inner = widget["width"] * CHARS_PER_COLUMN - 2
            properties = widget["properties"]
            text = [properties.get("title", "").upper()[:inner]]
            for line in metric_lines(properties):
                text += textwrap.wrap(line, inner, subsequent_indent="  ")
            boxes.append((inner, text))
        height = max(len(text) for _, text in boxes)
        out.append("".join("+" + "-" * inner + "+" for inner, _ in boxes))
        for index in range(height):
            out.append("".join("|" + (text[index] if index < len(text) else "").ljust(inner) + "|"
                               for inner, text in boxes))
        out.append("".join("+" + "-" * inner + "+" for inner, _ in boxes))
    return "\n".join(out)


def alarms(template: dict) -> list[dict]:
    found = []
    for logical_id, resource in sorted(template["Resources"].items()):
        if resource["Type"] != "AWS::CloudWatch::Alarm":
            continue
        properties = resource["Properties"]
        metrics = properties.get("Metrics", [])
        shown = next((m for m in metrics if m.get("ReturnData", True)), {})
        period = shown.get("MetricStat", {}).get("Period") or shown.get("Period") or 60
        what = shown.get("Expression") or "{Namespace}/{MetricName} {Stat}".format(
            Namespace=shown["MetricStat"]["Metric"]["Namespace"], MetricName=shown["MetricStat"]["Metric"]["MetricName"],
            Stat=shown["MetricStat"]["Stat"])
        found.append({"id": logical_id, "what": what, "comparison": properties["ComparisonOperator"],
                      "threshold": properties["Threshold"], "periods": properties["EvaluationPeriods"],
                      "datapoints": properties.get("DatapointsToAlarm", properties["EvaluationPeriods"]),
                      "missing": properties.get("TreatMissingData", "missing"), "period_min": period // 60,
                      "description": properties["AlarmDescription"]})
    return found


def render_alarms(template: dict) -> str:
    symbols = {"GreaterThanThreshold": ">", "GreaterThanOrEqualToThreshold": ">=", "LessThanThreshold": "<"}
    lines = []
    for alarm in alarms(template):
        name = alarm["id"].removeprefix("ObservabilityAlarms")[:-8]  # the construct id, without the hash
        lines.append(f"- {name}: {alarm['what']} {symbols[alarm['comparison']]} {alarm['threshold']:g} in "
                     f"{alarm['datapoints']} of {alarm['periods']} periods of {alarm['period_min']} min "
                     f"(missing data: {alarm['missing']})")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    template = json.loads(Path(argv[0]).read_text())
    print(render_dashboard(dashboard_body(template)))
    print()
    print(render_alarms(template))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
