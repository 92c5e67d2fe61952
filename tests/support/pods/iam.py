"""The loopback AWS answers each pod as AWS would answer its role: IAM enforced in front of moto.

Why not moto's own IAM: moto 5.2.5 authorizes only when INITIAL_NO_AUTH_ACTION_COUNT is
set, and its evaluator (moto/iam/access_control.py) says "TODO add support for the
Resource and Condition parts of IAM policies": no s3:prefix, no namespace condition. It
also answers NoSuchKey whatever the caller may do, which is how a 500 on every queued job
slipped through (issue 21). So this module is a thin reverse proxy instead, one loopback
listener per (role, resources of the test), in front of the session's moto:

* the role is found from the synthesized output, never by hand: the pod's
  `serviceAccountName` -> the AWS::EKS::PodIdentityAssociation naming it -> RoleArn (a
  GetAtt, possibly through an Fn::ImportValue) -> every AWS::IAM::Policy/ManagedPolicy
  whose Roles name that role, its ManagedPolicyArns (ours only) and inline Policies;
* CloudFormation tokens in those policies are resolved for the test session: pseudo
  parameters to moto's (partition aws, the test region, account 123456789012 =
  moto.core.models.DEFAULT_ACCOUNT_ID); a resource to what the harness put in its place:
  each env var the Adaptations substitute (SD21_BUCKET, the job queue/topic) holds, in the
  pod spec, a placeholder naming the resource it stands for (`${Ref:JobsQueue...}`), and
  that resource's Ref/Arn become the test's bucket/queue/topic. A token that cannot be
  resolved fails loudly, when a statement that names it is needed (never allow by default);
* each request is classified (IAM action, resource ARN, condition keys) from its REST path
  (S3), X-Amz-Target + JSON body (SQS, CloudWatch) or query form (SNS, SQS, CloudWatch),
  the service taken from the SigV4 credential scope; it is evaluated as "Policy evaluation
  logic" (IAM User Guide) describes for one account and identity-based policies only:
  an explicit Deny wins, else any Allow allows, else it is implicitly denied. Condition
  operators: String(Not)Equals, String(Not)Like; a missing key fails a positive operator and
  satisfies a negated one ("IAM JSON policy elements: Condition operators"). Any other
  operator, an unmapped request or an unresolvable token is a harness problem: answered 500
  and recorded in `RoleProxies.problems`, which the fixtures assert empty;
* a denied request gets the service's own error shape (S3: 403 AccessDenied XML, "Error
  responses" in the S3 API reference; SQS: AccessDeniedException, 400 with
  x-amzn-query-error, SQS API reference "Common Errors"; SNS: 403 AuthorizationError, SNS API
  reference "Publish"; CloudWatch: as SQS, its exact shape could not be verified); an
  allowed one goes to moto unchanged;
* a GetObject/HeadObject of a missing key answers 403 AccessDenied, not moto's 404, unless
  the role may s3:ListBucket the bucket with no s3:prefix condition (S3 API reference,
  GetObject and HeadObject, "Permissions": "If you don't have the s3:ListBucket permission,
  Amazon S3 returns an HTTP status code 403"). ListBucket is checked with an empty request
  context, so a prefix-conditioned grant does not count: how S3 treats one there is not
  documented (could not verify); our roles only have prefix-conditioned ones.

Limits: S3 SigV2 (presigned) requests are accepted, though S3 refuses SigV2 on buckets created
after 2020-06-24 (re:Post announcement "AWS Signature Version 4 to replace ... Version 2");
resource-based policies (bucket policy, queue/topic/key policies), SCPs, permission
boundaries, session policies and KMS (moto does not call KMS for SSE or an encrypted topic)
are not evaluated; aws:SecureTransport cannot hold on loopback HTTP; path-style S3 only; a
ServiceAccount name must be unique across namespaces in the templates.
"""
from __future__ import annotations

import http.client
import json
import random
import re
import socket
import threading
import urllib.parse
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional

MOTO_ACCOUNT = "123456789012"  # moto.core.models.DEFAULT_ACCOUNT_ID
ENDPOINT_NAMES = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL_SNS",
                  "AWS_ENDPOINT_URL_CLOUDWATCH")


class PolicyError(Exception):
    """The harness cannot decide this request: a gap in the harness, never a silent allow."""


# --- evaluation ------------------------------------------------------------------------

@dataclass(frozen=True)
class Request:
    """One authorization AWS makes for a call (CopyObject makes two)."""

    action: str                       # "s3:GetObject"
    resource: str                     # an ARN, or "*" for actions without resource types
    context: Mapping[str, str] = field(default_factory=dict)  # condition keys, lower-case


def wildcard(pattern: str, value: str, ignore_case: bool = False) -> bool:
    """IAM's multi-character `*` and single-character `?` (IAM JSON policy elements: Action, Resource)."""
    if "${" in pattern:
        raise PolicyError(f"policy variables are not emulated: {pattern!r}")
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL) is not None


# operator -> (does one policy value match the request's value, is the operator negated)
OPERATORS: dict[str, tuple[Callable[[str, str], bool], bool]] = {
    "StringEquals": (lambda wanted, value: wanted == value, False),
    "StringNotEquals": (lambda wanted, value: wanted == value, True),
    "StringLike": (lambda wanted, value: wildcard(wanted, value), False),
    "StringNotLike": (lambda wanted, value: wildcard(wanted, value), True),
}


def condition_holds(operator: str, key: str, wanted: Any, context: Mapping[str, str]) -> bool:
    if operator not in OPERATORS:
        raise PolicyError(f"condition operator {operator!r} is not emulated (add it to tests/support/pods/iam.py)")
    matches, negated = OPERATORS[operator]
    value = context.get(key.lower())  # condition key names are case-insensitive
    if value is None:
        return negated
    hit = any(matches(str(w), value) for w in (wanted if isinstance(wanted, list) else [wanted]))
    return not hit if negated else hit


def _listed(value: Any) -> list:
    return value if isinstance(value, list) else [value]


@dataclass(frozen=True)
class Statement:
    """One statement of a synthesized policy; its Resource tokens are resolved when needed."""

    body: dict
    origin: str                         # "PolicyLogicalId/Sid", for messages and removal
    resolve: Callable[[Any], str]       # a CloudFormation expression -> its value in this test

    @property
    def sid(self) -> str:
        return self.body.get("Sid", "")

    def _actions_match(self, action: str) -> bool:
        if "Action" in self.body:
            return any(wildcard(a, action, ignore_case=True) for a in _listed(self.body["Action"]))
        return not any(wildcard(a, action, ignore_case=True) for a in _listed(self.body["NotAction"]))

    def _resources_match(self, resource: str) -> bool:
        if "Resource" in self.body:
            return any(wildcard(self.resolve(r), resource) for r in _listed(self.body["Resource"]))
        return not any(wildcard(self.resolve(r), resource) for r in _listed(self.body["NotResource"]))

    def applies(self, request: Request) -> bool:
        if "Principal" in self.body or "NotPrincipal" in self.body:
            raise PolicyError(f"{self.origin}: a Principal belongs in a resource policy, not a role's")
        if not self._actions_match(request.action) or not self._resources_match(request.resource):
            return False
        return all(condition_holds(operator, key, wanted, request.context)
                   for operator, keys in self.body.get("Condition", {}).items()
                   for key, wanted in keys.items())


@dataclass(frozen=True)
class Decision:
    allowed: bool
    why: str


def evaluate(statements: Iterable[Statement], request: Request) -> Decision:
    """Explicit Deny, else Allow, else implicit deny (IAM User Guide, "Policy evaluation logic")."""
    allows = []
    for statement in statements:
        if statement.applies(request):
            if statement.body["Effect"] == "Deny":
                return Decision(False, f"explicitly denied by {statement.origin}")
            allows.append(statement.origin)
    if allows:
        return Decision(True, f"allowed by {allows[0]}")
    return Decision(False, "no identity-based policy allows it")


# --- the synthesized output ------------------------------------------------------------

Ref = tuple[str, str]  # (stack name, logical id)
PLACEHOLDER = re.compile(r"^\$\{(Ref|ImportValue):([^}]+)\}$")  # tools.rendering.placeholder


class Templates:
    """Every stack template of one cdk.out, with its exports."""

    def __init__(self, outdir: Path):
        self.stacks = {path.name[:-len(".template.json")]: json.loads(path.read_text())
                       for path in sorted(Path(outdir).glob("*.template.json"))}
        self.exports: dict[str, tuple[Any, str]] = {}
        for stack, template in self.stacks.items():
            for output in template.get("Outputs", {}).values():
                name = output.get("Export", {}).get("Name")
                if isinstance(name, str):
                    self.exports[name] = (output["Value"], stack)

    def resource(self, ref: Ref) -> dict:
        return self.stacks[ref[0]]["Resources"][ref[1]]

    def imported(self, name: str) -> tuple[Any, str]:
        if name not in self.exports:
            raise PolicyError(f"Fn::ImportValue {name!r}: no stack exports it")
        return self.exports[name]

    def referenced(self, expression: Any, stack: str) -> Ref:
        """The resource a Ref/GetAtt names, through any Fn::ImportValue."""
        if isinstance(expression, dict) and len(expression) == 1:
            (function, argument), = expression.items()
            if function == "Fn::ImportValue" and isinstance(argument, str):
                return self.referenced(*self.imported(argument))
            if function == "Ref" and isinstance(argument, str):
                return stack, argument
            if function == "Fn::GetAtt":
                return stack, (argument if isinstance(argument, list) else argument.split(".", 1))[0]
        raise PolicyError(f"not a reference to a resource: {expression!r}")

    def holder(self, logical_id: str) -> str:
        """The one stack whose resources include logical_id (a `${Ref:...}` placeholder has no stack)."""
        stacks = [name for name, t in self.stacks.items() if logical_id in t.get("Resources", {})]
        if len(stacks) != 1:
            raise PolicyError(f"{logical_id}: in {len(stacks)} stacks, cannot tell which one")
        return stacks[0]

    def of_type(self, *types: str) -> Iterable[tuple[Ref, dict]]:
        for stack, template in self.stacks.items():
            for logical_id, resource in template.get("Resources", {}).items():
                if resource.get("Type") in types:
                    yield (stack, logical_id), resource

    def role_of(self, service_account: str) -> Ref:
        associations = [(ref, r) for ref, r in self.of_type("AWS::EKS::PodIdentityAssociation")
                        if r["Properties"]["ServiceAccount"] == service_account]
        if len(associations) != 1:
            raise PolicyError(f"ServiceAccount {service_account!r}: {len(associations)} pod identity associations")
        (stack, _), association = associations[0]
        return self.referenced(association["Properties"]["RoleArn"], stack)

    def policies_of(self, role: Ref) -> list[tuple[str, str, dict]]:
        """(stack, origin, document) of every policy attached to the role."""
        found = []
        for (stack, logical_id), resource in self.of_type("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            properties = resource["Properties"]
            if any(self.referenced(r, stack) == role for r in properties.get("Roles", [])):
                found.append((stack, logical_id, properties["PolicyDocument"]))
        properties = self.resource(role)["Properties"]
        for arn in properties.get("ManagedPolicyArns", []):
            managed = self.referenced(arn, role[0]) if isinstance(arn, dict) else None
            if managed is None or self.resource(managed)["Type"] != "AWS::IAM::ManagedPolicy":
                raise PolicyError(f"{role[1]}: managed policy {arn!r} is not in the templates (AWS managed?)")
            if not any(origin == managed[1] for _, origin, _ in found):
                found.append((managed[0], managed[1], self.resource(managed)["Properties"]["PolicyDocument"]))
        for inline in properties.get("Policies", []):
            found.append((role[0], f"{role[1]}.{inline['PolicyName']}", inline["PolicyDocument"]))
        return found

    def bindings(self, pod_spec: dict, substituted: Mapping[str, str]) -> dict[Ref, str]:
        """Resource -> the test's value, from each env var the harness substitutes in this pod."""
        bound: dict[Ref, str] = {}
        for container in pod_spec.get("initContainers", []) + pod_spec["containers"]:
            for item in container.get("env", []):
                match = PLACEHOLDER.match(str(item.get("value", "")))
                if item["name"] not in substituted or not match or match.group(2).startswith("AWS::"):
                    continue
                kind, argument = match.groups()
                ref = (self.referenced(*self.imported(argument)) if kind == "ImportValue"
                       else (self.holder(argument), argument))
                value = substituted[item["name"]]
                if bound.setdefault(ref, value) != value:
                    raise PolicyError(f"{ref[1]} stands for both {bound[ref]!r} and {value!r}")
        return bound


@dataclass(frozen=True)
class Session:
    """Where the test runs: moto's pseudo parameters and the resources the test created."""

    region: str
    bound: Mapping[Ref, str]
    partition: str = "aws"
    account: str = MOTO_ACCOUNT

    def attribute(self, templates: Templates, ref: Ref, attribute: str) -> str:
        if ref not in self.bound:
            raise PolicyError(f"{ref[1]} ({ref[0]}) has no stand-in in this test: no env var the harness "
                              f"substitutes names it")
        value, kind = self.bound[ref], templates.resource(ref)["Type"]
        if kind == "AWS::S3::Bucket":
            values = {"Ref": value, "Arn": f"arn:{self.partition}:s3:::{value}"}
        elif kind == "AWS::SQS::Queue":
            account, name = urllib.parse.urlparse(value).path.strip("/").split("/")[-2:]
            values = {"Ref": value, "QueueUrl": value, "QueueName": name,
                      "Arn": f"arn:{self.partition}:sqs:{self.region}:{account}:{name}"}
        elif kind == "AWS::SNS::Topic":
            values = {"Ref": value, "TopicArn": value, "TopicName": value.rsplit(":", 1)[-1]}
        else:
            raise PolicyError(f"{ref[1]}: no stand-in for a {kind}")
        if attribute not in values:
            raise PolicyError(f"{ref[1]}.{attribute} of a {kind} is not emulated")
        return values[attribute]

    def resolver(self, templates: Templates, stack: str) -> Callable[[Any], str]:
        pseudo = {"AWS::Partition": self.partition, "AWS::Region": self.region, "AWS::AccountId": self.account,
                  "AWS::URLSuffix": "amazonaws.com"}

        def resolve(expression: Any) -> str:
            if isinstance(expression, str):
                return expression
            if isinstance(expression, dict) and len(expression) == 1:
                (function, argument), = expression.items()
                if function == "Ref" and argument in pseudo:
                    return pseudo[argument]
                if function == "Ref":
                    return self.attribute(templates, (stack, argument), "Ref")
                if function == "Fn::GetAtt":
                    logical_id, name = argument if isinstance(argument, list) else argument.split(".", 1)
                    return self.attribute(templates, (stack, logical_id), name)
                if function == "Fn::Join":
                    separator, parts = argument
                    return separator.join(resolve(part) for part in parts)
                if function == "Fn::ImportValue" and isinstance(argument, str):
                    value, exporter = templates.imported(argument)
                    return self.resolver(templates, exporter)(value)
            raise PolicyError(f"cannot resolve {expression!r} in {stack}")

        return resolve


def role_statements(templates: Templates, role: Optional[Ref], session: Session,
                    removed: frozenset[str] = frozenset()) -> list[Statement]:
    """The role's statements, less those whose Sid is in `removed` (a test's deliberate gap)."""
    if role is None:
        return []
    statements = []
    for stack, policy, document in templates.policies_of(role):
        for body in _listed(document["Statement"]):
            if body.get("Sid") not in removed:
                statements.append(Statement(body, f"{policy}/{body.get('Sid', '?')}",
                                            session.resolver(templates, stack)))
    return statements


# --- requests -> what IAM authorizes -----------------------------------------------------

SIGNED_PARAMS = re.compile(r"^(x-amz-|x-id$|response-|AWSAccessKeyId$|Signature$|Expires$)", re.IGNORECASE)
LIST_PARAMS = {"list-type", "prefix", "delimiter", "max-keys", "continuation-token", "start-after",
               "fetch-owner", "encoding-type", "marker"}


def service_of(headers: Mapping[str, str], query: Mapping[str, list[str]]) -> str:
    """The signing name in the SigV4 credential scope: s3, sqs, sns, monitoring. SigV2 is S3's
    only: botocore 1.44 still presigns S3 URLs with it unless told s3v4 (sd21.jobs' image URLs)."""
    if "AWSAccessKeyId" in query and "Signature" in query or headers.get("Authorization", "").startswith("AWS "):
        return "s3"
    credential = (query.get("X-Amz-Credential") or [""])[0]
    if not credential:
        match = re.search(r"Credential=([^,\s]+)", headers.get("Authorization", ""))
        credential = match.group(1) if match else ""
    parts = credential.split("/")
    if len(parts) != 5:
        raise PolicyError("an unsigned request: a pod with a role always signs")
    return parts[3]


def _s3_arn(partition: str, bucket: str, key: Optional[str] = None) -> str:
    return f"arn:{partition}:s3:::{bucket}" + (f"/{key}" if key is not None else "")


def _copy_source(headers: Mapping[str, str], partition: str) -> list[Request]:
    """CopyObject/UploadPartCopy also read their source (S3 API reference, CopyObject, "Permissions")."""
    source = headers.get("x-amz-copy-source")
    if not source:
        return []
    path, _, version = urllib.parse.unquote(source).lstrip("/").partition("?")
    if version:
        raise PolicyError(f"a versioned copy source is not emulated: {source}")
    bucket, _, key = path.partition("/")
    return [Request("s3:GetObject", _s3_arn(partition, bucket, key))]


def s3_requests(method: str, path: str, query: Mapping[str, list[str]], headers: Mapping[str, str],
                partition: str) -> list[Request]:
    """Actions per "Required permissions for Amazon S3 API operations" (S3 User Guide)."""
    bucket, _, key = urllib.parse.unquote(path).lstrip("/").partition("/")
    params = {name for name in query if not SIGNED_PARAMS.match(name)}
    if not bucket:
        raise PolicyError(f"S3 {method} {path}: not a path-style bucket request")
    if not key:
        if method in ("GET", "HEAD") and params <= LIST_PARAMS:
            context = {f"s3:{name}": query[name][0] for name in ("prefix", "delimiter", "max-keys") if name in query}
            return [Request("s3:ListBucket", _s3_arn(partition, bucket), context)]
        raise PolicyError(f"S3 {method} on bucket {bucket} with {sorted(params)}: not mapped to an IAM action")
    target = _s3_arn(partition, bucket, key)
    operations = {
        ("GET", frozenset()): "s3:GetObject", ("HEAD", frozenset()): "s3:GetObject",
        ("GET", frozenset({"partNumber"})): "s3:GetObject", ("HEAD", frozenset({"partNumber"})): "s3:GetObject",
        ("PUT", frozenset()): "s3:PutObject", ("PUT", frozenset({"partNumber", "uploadId"})): "s3:PutObject",
        ("POST", frozenset({"uploads"})): "s3:PutObject", ("POST", frozenset({"uploadId"})): "s3:PutObject",
        ("DELETE", frozenset()): "s3:DeleteObject", ("DELETE", frozenset({"uploadId"})): "s3:AbortMultipartUpload",
        ("GET", frozenset({"uploadId"})): "s3:ListMultipartUploadParts",
    }
    action = operations.get((method, frozenset(params)))
    if action is None:
        raise PolicyError(f"S3 {method} on an object with {sorted(params)}: not mapped to an IAM action")
    extra = _copy_source(headers, partition) if method == "PUT" else []
    return [Request(action, target)] + extra


SQS_BATCHES = {"SendMessageBatch": "SendMessage", "DeleteMessageBatch": "DeleteMessage",
               "ChangeMessageVisibilityBatch": "ChangeMessageVisibility"}


def _operation(headers: Mapping[str, str], body: bytes) -> tuple[str, dict]:
    """(operation, parameters) of a JSON (X-Amz-Target) or query (Action=) request."""
    target = headers.get("X-Amz-Target")
    if target:
        return target.rsplit(".", 1)[-1], json.loads(body or b"{}")
    form = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode(), keep_blank_values=True).items()}
    if "Action" not in form:
        raise PolicyError("neither X-Amz-Target nor Action: not a JSON or query request")
    return form.pop("Action"), form


def sqs_requests(headers: Mapping[str, str], body: bytes, session: Session) -> list[Request]:
    """Batch calls are authorized as their single action (SQS Developer Guide, "Amazon SQS API permissions")."""
    operation, params = _operation(headers, body)
    if "QueueUrl" in params:
        account, name = urllib.parse.urlparse(params["QueueUrl"]).path.strip("/").split("/")[-2:]
    elif operation == "GetQueueUrl":
        account, name = params.get("QueueOwnerAWSAccountId", session.account), params["QueueName"]
    else:
        raise PolicyError(f"SQS {operation} without a QueueUrl: not mapped")
    arn = f"arn:{session.partition}:sqs:{session.region}:{account}:{name}"
    return [Request(f"sqs:{SQS_BATCHES.get(operation, operation)}", arn)]


def sns_requests(headers: Mapping[str, str], body: bytes) -> list[Request]:
    operation, params = _operation(headers, body)
    if "TopicArn" not in params:
        raise PolicyError(f"SNS {operation} without a TopicArn: not mapped")
    return [Request(f"sns:{'Publish' if operation == 'PublishBatch' else operation}", params["TopicArn"])]


def cloudwatch_requests(headers: Mapping[str, str], body: bytes) -> list[Request]:
    """PutMetricData has no resource type; cloudwatch:namespace is its condition key
    (Service Authorization Reference, "Actions, resources, and condition keys for Amazon CloudWatch")."""
    if "cbor" in headers.get("Content-Type", ""):
        raise PolicyError("CloudWatch's CBOR protocol is not decoded by the harness")
    operation, params = _operation(headers, body)
    context = {"cloudwatch:namespace": params["Namespace"]} if operation == "PutMetricData" else {}
    return [Request(f"cloudwatch:{operation}", "*", context)]


# --- the proxy ---------------------------------------------------------------------------

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "expect",
              "proxy-authorization", "proxy-authenticate", "content-length"}


def _denied(service: str, method: str, role: str, request: Request, message: str = "") -> tuple[int, list, bytes]:
    """The service's own AccessDenied answer (shapes: the module docstring)."""
    message = message or (f"User: arn:aws:sts::{MOTO_ACCOUNT}:assumed-role/{role}/pod is not authorized to perform: "
                          f"{request.action} on resource: \"{request.resource}\" because no identity-based policy "
                          f"allows the {request.action} action")
    request_id = uuid.uuid4().hex
    if service == "s3":
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code><Message>{_xml(message)}'
                f'</Message><RequestId>{request_id}</RequestId></Error>').encode()
        return 403, [("Content-Type", "application/xml")], b"" if method == "HEAD" else body
    if service == "sns":
        body = (f'<ErrorResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><Error><Type>Sender</Type>'
                f'<Code>AuthorizationError</Code><Message>{_xml(message)}</Message></Error>'
                f'<RequestId>{request_id}</RequestId></ErrorResponse>').encode()
        return 403, [("Content-Type", "text/xml")], body
    body = json.dumps({"__type": "com.amazon.coral.service#AccessDeniedException", "message": message}).encode()
    return 400, [("Content-Type", "application/x-amz-json-1.0"), ("x-amzn-query-error", "AccessDenied;Sender"),
                 ("x-amzn-RequestId", request_id)], body


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


class Gate:
    """One role's policies in one test's resources, and the moto it guards."""

    def __init__(self, role: str, statements: list[Statement], session: Session, upstream: str,
                 problems: list[str], denials: list[str]):
        self.role, self.statements, self.session = role, statements, session
        self.upstream = urllib.parse.urlparse(upstream)
        self.problems, self.denials = problems, denials

    def requests(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> tuple[str, list[Request]]:
        split = urllib.parse.urlsplit(path)
        query = urllib.parse.parse_qs(split.query, keep_blank_values=True)
        service = service_of(headers, query)
        if service == "s3":
            return service, s3_requests(method, split.path, query, headers, self.session.partition)
        if service == "sqs":
            return service, sqs_requests(headers, body, self.session)
        if service == "sns":
            return service, sns_requests(headers, body)
        if service == "monitoring":
            return service, cloudwatch_requests(headers, body)
        raise PolicyError(f"service {service!r} is not behind the harness's proxy")

    def denial(self, requests: list[Request]) -> Optional[Request]:
        return next((r for r in requests if not evaluate(self.statements, r).allowed), None)

    def may_list(self, object_arn: str) -> bool:
        bucket = object_arn.split("/", 1)[0]
        return evaluate(self.statements, Request("s3:ListBucket", bucket)).allowed

    def forward(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> tuple[int, list, bytes]:
        connection = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=300)
        try:
            sent = {k: v for k, v in headers.items() if k.lower() not in HOP_BY_HOP}
            sent["Content-Length"] = str(len(body))
            connection.request(method, path, body=body, headers=sent)
            answer = connection.getresponse()
            return answer.status, answer.getheaders(), answer.read()
        finally:
            connection.close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, and 100-continue for boto3's uploads
    server: "_Proxy"

    def log_message(self, *args) -> None:
        pass

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            for _ in range(1_000_000):  # bounded: a chunk per loop, the last one empty
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                data = self.rfile.read(size) if size else b""
                self.rfile.readline()
                if not size:
                    break
                chunks.append(data)
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _answer(self, status: int, headers: Iterable[tuple[str, str]], body: bytes,
                length: Optional[str] = None) -> None:
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in HOP_BY_HOP:
                self.send_header(name, value)
        self.send_header("Content-Length", length if length is not None else str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _handle(self) -> None:
        gate, body = self.server.gate, self._body()
        headers, may_list = dict(self.headers.items()), True
        try:
            service, requests = gate.requests(self.command, self.path, headers, body)
            denied = gate.denial(requests)
            if denied is None and requests[0].action == "s3:GetObject" and self.command in ("GET", "HEAD"):
                may_list = gate.may_list(requests[0].resource)
        except (PolicyError, KeyError, ValueError) as problem:
            text = f"{gate.role}: {self.command} {self.path}: {type(problem).__name__}: {problem}"
            gate.problems.append(text)
            return self._answer(500, [("Content-Type", "text/plain")], f"harness problem: {text}".encode())
        if denied is not None:
            gate.denials.append(f"{gate.role}: {denied.action} on {denied.resource}")
            return self._answer(*_denied(service, self.command, gate.role, denied))
        status, answer_headers, answer = gate.forward(self.command, self.path, headers, body)
        if status == 404 and requests[0].action == "s3:GetObject" and not may_list:
            # A missing key, to a caller that may not list the bucket: S3 says 403, not 404.
            if self.command == "HEAD" or b"<Code>NoSuchKey</Code>" in answer:
                return self._answer(*_denied(service, self.command, gate.role, requests[0], "Access Denied"))
        length = dict((k.lower(), v) for k, v in answer_headers).get("content-length") \
            if self.command == "HEAD" else None
        self._answer(status, answer_headers, answer, length)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle


def _port_below_ephemeral(attempts: int = 50) -> int:
    """A free port under the kernel's ephemeral range. The harness hands pods ports from
    free_port() (bind to 0, then close) before it starts their proxy; a proxy bound to 0 could
    take such a port back before the pod binds it."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(attempts):
        port = random.randrange(max(1024, low - 8000), low)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise AssertionError(f"no free port below {low} in {attempts} tries")


class _Proxy(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, gate: Gate):
        super().__init__(("127.0.0.1", _port_below_ephemeral()), _Handler)
        self.gate = gate
        threading.Thread(target=self.serve_forever, name=f"iam-{gate.role}", daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


# --- what the harness uses -----------------------------------------------------------------

class RoleProxies:
    """One synthesized app's roles, enforced in front of `upstream` (the session's moto).

    `endpoint(pod_spec, substituted)` starts (once per role and set of test resources) the
    proxy for the pod's role and returns its URL; the Adaptations point the pod's
    AWS_ENDPOINT_URL_* there. `without(*sids)` is the same app with those statements gone.
    """

    def __init__(self, outdir: Path, upstream: str, region: str, removed: frozenset[str] = frozenset(),
                 templates: Optional[Templates] = None, problems: Optional[list[str]] = None,
                 denials: Optional[list[str]] = None):
        self.templates = templates or Templates(outdir)
        self.outdir, self.upstream, self.region, self.removed = outdir, upstream, region, removed
        self.problems: list[str] = problems if problems is not None else []
        # What a role was refused (a missing key's 403 aside), for diagnosis.
        self.denials: list[str] = denials if denials is not None else []
        self._proxies: dict[tuple, _Proxy] = {}
        self._lock = threading.Lock()

    def without(self, *sids: str) -> "RoleProxies":
        return RoleProxies(self.outdir, self.upstream, self.region, self.removed | frozenset(sids),
                           self.templates, self.problems, self.denials)

    def role_of(self, pod_spec: dict) -> Optional[Ref]:
        """No serviceAccountName: the pod gets no credentials from Pod Identity, so nothing is allowed."""
        account = pod_spec.get("serviceAccountName")
        return self.templates.role_of(account) if account else None

    def gate(self, pod_spec: dict, substituted: Mapping[str, str]) -> Gate:
        role = self.role_of(pod_spec)
        session = Session(self.region, self.templates.bindings(pod_spec, substituted))
        statements = role_statements(self.templates, role, session, self.removed)
        return Gate(role[1] if role else "no-role", statements, session, self.upstream, self.problems, self.denials)

    def endpoint(self, pod_spec: dict, substituted: Mapping[str, str]) -> str:
        role = self.role_of(pod_spec)
        key = (role, tuple(sorted(self.templates.bindings(pod_spec, substituted).items())))
        with self._lock:
            if key not in self._proxies:
                self._proxies[key] = _Proxy(self.gate(pod_spec, substituted))
            return self._proxies[key].url

    def close(self) -> None:
        with self._lock:
            for proxy in self._proxies.values():
                proxy.shutdown()
                proxy.server_close()
            self._proxies.clear()
