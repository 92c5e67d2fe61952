"""Small rewrites of what CDK Pipelines renders: cfn-lint clean, and nothing unpinned."""
import json

from aws_cdk import Stack, aws_codebuild as codebuild, aws_codepipeline as codepipeline, pipelines


def join_to_sub(value):
    """{"Fn::Join": ["", [...]]} of literals, Refs and GetAtts as the equal {"Fn::Sub": "..."}."""
    if not (isinstance(value, dict) and "Fn::Join" in value and value["Fn::Join"][0] == ""):
        return None
    text = ""
    for part in value["Fn::Join"][1]:
        if isinstance(part, str):
            text += part
        elif isinstance(part, dict) and set(part) == {"Ref"}:
            text += "${%s}" % part["Ref"]
        elif isinstance(part, dict) and set(part) == {"Fn::GetAtt"}:
            text += "${%s}" % ".".join(part["Fn::GetAtt"])
        else:
            return None
    return {"Fn::Sub": text}


def deployment_role_arns_as_sub(pipeline: codepipeline.Pipeline) -> int:
    """CDK renders the CloudFormation deployment role of each change-set action
    (the bootstrap cfn-exec role) as an Fn::Join; cfn-lint (E3703) requires the
    equivalent Fn::Sub there. Returns how many were rewritten."""
    cfn = pipeline.node.default_child
    stages = Stack.of(pipeline).resolve(cfn.stages)
    rewritten = 0
    for s, stage in enumerate(stages):
        for a, action in enumerate(stage["actions"]):
            sub = join_to_sub((action.get("configuration") or {}).get("RoleArn"))
            if sub:
                cfn.add_property_override(f"Stages.{s}.Actions.{a}.Configuration.RoleArn", sub)
                rewritten += 1
    return rewritten


def pin_security_check_cli(pipeline: pipelines.CodePipeline, version: str) -> None:
    """The permissions-broadening check's CodeBuild project installs `aws-cdk` unpinned
    (its buildspec is fixed inside CDK Pipelines): install the pinned CLI instead."""
    projects = [c for c in pipeline.node.find_all()
                if isinstance(c, codebuild.CfnProject) and "SecurityCheck" in c.node.path]
    for project in projects:
        stack = Stack.of(project)
        spec = json.dumps(stack.resolve(project.source)["buildSpec"])
        pinned = spec.replace("npm install -g aws-cdk\\\\n", f"npm install -g aws-cdk@{version}\\\\n")
        pinned = pinned.replace('npm install -g aws-cdk\\"', f'npm install -g aws-cdk@{version}\\"')
        if pinned == spec:
            raise ValueError("CDK Pipelines' security check no longer installs `aws-cdk` as expected")
        project.add_property_override("Source.BuildSpec", json.loads(pinned))
