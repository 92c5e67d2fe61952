"""Reading a synthesized Custom::AWSCDK-EKS-HelmChart's values."""
import json


def helm_values(resource: dict) -> dict:
    """The chart's values as a dict; each CloudFormation token inside them reads "<token>"."""
    values = resource["Properties"]["Values"]
    if isinstance(values, dict):  # {"Fn::Join": ["", [text, token, text, ...]]}
        values = "".join(part if isinstance(part, str) else "<token>" for part in values["Fn::Join"][1])
    return json.loads(values)
