"""The async-job parts in the synthesized app: the queue's figures from the settings, the
env the pods read, and who may do what (least privilege on each side). The queue, its
dead letters and topic alone: tests/unit/stacks/workload/jobs; the lifecycle of jobs/:
tests/unit/stacks/storage."""
from __future__ import annotations

import json

from sd21.contract import ServerEnv

from stacks.workload.jobs.queue import visibility_seconds
from tests.conftest import logical_id


def _policies_of(template: dict, role_fragment: str) -> list[dict]:
    return [s for r in template["Resources"].values() if r["Type"] == "AWS::IAM::Policy"
            and role_fragment in json.dumps(r["Properties"]["Roles"])
            for s in r["Properties"]["PolicyDocument"]["Statement"]]


def test_the_queue_takes_its_figures_from_the_settings(synthesized, application):
    """The queue's own shape (encryption, TLS only, dead letters, topic): tests/unit/stacks/workload/jobs."""
    settings = application.settings
    jobs = application.workload.jobs
    queue = synthesized.template(application.workload).to_json()["Resources"][logical_id(jobs.queue)]["Properties"]
    assert queue["VisibilityTimeout"] == visibility_seconds(settings.endpoint.request_timeout_seconds)
    assert queue["VisibilityTimeout"] > settings.endpoint.request_timeout_seconds
    assert queue["RedrivePolicy"]["maxReceiveCount"] == settings.endpoint.job_max_attempts


def test_pods_are_told_the_queue_they_use(synthesized, application):
    """The env the server reads names the very queue, dead-letter queue and topic created."""
    from tools import rendering

    jobs = application.workload.jobs
    objects = rendering.all_objects(rendering.from_template_file(synthesized.template_file(application.workload)))
    (deployment,) = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "sd21-inference"]
    server = next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "server")
    # As sd21-serve parses it (sd21.contract.JobsEnv).
    told = ServerEnv.from_env({e["name"]: e["value"] for e in server["env"]}).jobs
    for value, construct in ((told.queue_url, jobs.queue), (told.dead_letter_url, jobs.dead_letters),
                             (told.topic_arn, jobs.topic)):
        assert logical_id(construct) in value, value
    assert told.max_attempts == application.settings.endpoint.job_max_attempts
    # The worker extends a message by what the queue itself says its visibility timeout is.
    queue = synthesized.template(application.workload).to_json()["Resources"][logical_id(jobs.queue)]["Properties"]
    assert told.visibility_s == queue["VisibilityTimeout"]


def test_the_worker_side_may_only_receive_delete_extend_and_announce(synthesized, application):
    jobs = application.workload.jobs
    statements = {s["Sid"]: s for s in _policies_of(synthesized.template(application.workload).to_json(), "ServeRole")
                  if s["Sid"] in ("SendJobs", "WorkJobs", "ReadDeadLetters", "AnnounceJobs", "EncryptAnnouncements")}
    assert sorted(statements["WorkJobs"]["Action"]) == ["sqs:ChangeMessageVisibility", "sqs:DeleteMessage",
                                                        "sqs:ReceiveMessage"]
    assert statements["WorkJobs"]["Resource"] == {"Fn::GetAtt": [logical_id(jobs.queue), "Arn"]}
    assert sorted(statements["ReadDeadLetters"]["Action"]) == ["sqs:ChangeMessageVisibility", "sqs:ReceiveMessage"]
    assert statements["AnnounceJobs"] == {"Sid": "AnnounceJobs", "Effect": "Allow", "Action": "sns:Publish",
                                          "Resource": {"Ref": logical_id(jobs.topic)}}
    assert statements["SendJobs"]["Action"] == "sqs:SendMessage"  # the servers accept jobs too (minReplicas >= 1)


def test_at_zero_the_gateway_may_only_enqueue(zero):
    gateway = _policies_of(zero.template(zero.application.workload), "GatewayRole")
    assert {json.dumps(s["Action"]) for s in gateway} == {'"cloudwatch:PutMetricData"', '"sqs:SendMessage"'}


def test_keda_may_only_read_the_depth_of_the_job_queue(each_mode):
    template = each_mode.template(each_mode.application.workload)
    jobs = each_mode.application.workload.jobs
    keda = _policies_of(template, "KedaRole")
    assert keda == [{"Sid": "ReadQueueDepth", "Effect": "Allow", "Action": "sqs:GetQueueAttributes",
                     "Resource": {"Fn::GetAtt": [logical_id(jobs.queue), "Arn"]}}]
    associations = [r["Properties"] for r in template["Resources"].values()
                    if r["Type"] == "AWS::EKS::PodIdentityAssociation" and r["Properties"]["Namespace"] == "keda"]
    assert [a["ServiceAccount"] for a in associations] == ["keda-operator"]
