"""The job queue alone: encrypted, TLS-only queues, dead letters after its max attempts, a
visibility timeout from the request timeout, an encrypted topic, and what each side may do."""
import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk.assertions import Match, Template
from sd21.contract import JobsEnv

from stacks.workload.jobs.queue import JobQueue, visibility_seconds


def _jobs(**props) -> tuple[cdk.Stack, JobQueue]:
    stack = cdk.Stack(cdk.App(), "Test")
    props = {"request_timeout_seconds": 90, "max_attempts": 4, "url_expires_seconds": 900, **props}
    return stack, JobQueue(stack, "Jobs", **props)


def _id(stack: cdk.Stack, construct) -> str:
    return stack.get_logical_id(construct.node.default_child)


def test_the_visibility_timeout_outlasts_a_generation():
    assert visibility_seconds(90) == 180
    assert visibility_seconds(10) == 60  # never below a minute


def test_queue_dead_letters_after_its_max_attempts_and_topic_is_encrypted():
    stack, jobs = _jobs(request_timeout_seconds=90, max_attempts=4)
    template = Template.from_stack(stack)
    resources = template.to_json()["Resources"]
    queue = resources[_id(stack, jobs.queue)]["Properties"]
    assert queue["SqsManagedSseEnabled"] is True
    assert queue["VisibilityTimeout"] == 180
    assert queue["MessageRetentionPeriod"] == 4 * 24 * 3600
    assert queue["RedrivePolicy"] == {"deadLetterTargetArn": {"Fn::GetAtt": [_id(stack, jobs.dead_letters), "Arn"]},
                                      "maxReceiveCount": 4}
    dead = resources[_id(stack, jobs.dead_letters)]["Properties"]
    assert dead["MessageRetentionPeriod"] == 14 * 24 * 3600 and dead["SqsManagedSseEnabled"] is True
    for queue_resource in (jobs.queue, jobs.dead_letters):  # TLS only
        template.has_resource_properties("AWS::SQS::QueuePolicy", {
            "Queues": [{"Ref": _id(stack, queue_resource)}],
            "PolicyDocument": {"Statement": Match.array_with([Match.object_like(
                {"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}})])}})
    topic = resources[_id(stack, jobs.topic)]["Properties"]
    assert topic["KmsMasterKeyId"] == {"Fn::GetAtt": [_id(stack, jobs.key), "Arn"]}
    assert resources[_id(stack, jobs.key)]["Properties"]["EnableKeyRotation"] is True


def test_the_env_tells_the_pods_the_queue_and_its_figures():
    stack, jobs = _jobs(request_timeout_seconds=90, max_attempts=4, url_expires_seconds=900)
    # As sd21.jobs parses it (beside the bucket, which is the workload's): the deploy-time
    # names pass through as the tokens they are.
    told = JobsEnv.from_env({**jobs.env(), **JobsEnv(bucket="sd21-models-example").to_env()})
    assert (told.queue_url, told.dead_letter_url, told.topic_arn) == (
        jobs.queue.queue_url, jobs.dead_letters.queue_url, jobs.topic.topic_arn)
    assert stack.resolve([told.queue_url, told.dead_letter_url, told.topic_arn]) == [
        {"Ref": _id(stack, jobs.queue)}, {"Ref": _id(stack, jobs.dead_letters)}, {"Ref": _id(stack, jobs.topic)}]
    # The worker extends a message by what the queue itself says its visibility timeout is.
    assert (told.max_attempts, told.visibility_s, told.url_expires_s) == (4, 180, 900)


def test_each_side_gets_only_its_own_actions():
    stack, jobs = _jobs()
    assert [(s.sid, s.actions) for s in jobs.enqueue_statements()] == [("SendJobs", ["sqs:SendMessage"])]
    work = {s.sid: sorted(s.actions) for s in jobs.work_statements()}
    assert work == {"WorkJobs": ["sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:ReceiveMessage"],
                    "ReadDeadLetters": ["sqs:ChangeMessageVisibility", "sqs:ReceiveMessage"],
                    "AnnounceJobs": ["sns:Publish"],
                    "EncryptAnnouncements": ["kms:Decrypt", "kms:GenerateDataKey*"]}
    assert [(s.sid, s.actions) for s in jobs.depth_statements()] == [("ReadQueueDepth", ["sqs:GetQueueAttributes"])]
    role = iam.Role(stack, "Worker", assumed_by=iam.ServicePrincipal("pods.eks.amazonaws.com"))
    jobs.grant(stack, "Works", role, jobs.work_statements())
    (policy,) = Template.from_stack(stack).find_resources("AWS::IAM::Policy").values()
    assert policy["Properties"]["Roles"] == [{"Ref": _id(stack, role)}]
    resources = {s["Sid"]: s["Resource"] for s in policy["Properties"]["PolicyDocument"]["Statement"]}
    assert resources["EncryptAnnouncements"] == {"Fn::GetAtt": [_id(stack, jobs.key), "Arn"]}
