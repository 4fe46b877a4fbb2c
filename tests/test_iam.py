"""The roles' IAM, checked against policy_sentry's copy of the AWS Service Authorization Reference (not
against a list of our own), and against the table of calls in ``infra/iam_calls.py``.

The app is synthesized in-process from the default config (with a schedule, so the schedule's role is
checked too). Every statement of every identity policy must name actions that exist, on resources whose
ARN has the format of a resource type those actions accept, under condition keys those actions support;
resource policies (bucket, key, topic, queue) must name existing actions and condition keys. Then each
row of the call table must be granted on its resource by the role it belongs to.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aws_cdk import Stack
from policy_sentry.shared.iam_data import get_service_prefix_data

from app import build_app
from config import load_config
from infra.iam_calls import CALLS, DEPLOYER, PLACEHOLDERS, Call
from infra.names import PlatformNames
from infra.stacks import DeployStack, FoundationStack, ImagesStack, PipelineStack, TrackingStack

ROOT = Path(__file__).resolve().parents[1]
StackT = TypeVar("StackT", bound=Stack)
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
PARTITION, ACCOUNT = "aws", "123456789012"  # the config leaves the account to the deploy

# Global condition keys (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html):
# in every request context, so the Service Authorization Reference does not list them per service.
GLOBAL_CONDITION_KEYS = {"aws:securetransport", "aws:sourcearn", "aws:sourceaccount", "aws:principalarn"}


# ---- policy_sentry: the actions, resource types and condition keys of each service --------------------


def service(prefix: str) -> dict[str, Any]:
    data = get_service_prefix_data(prefix)
    return data if isinstance(data, dict) else {}


def glob_regex(pattern: str, *, case_sensitive: bool) -> re.Pattern[str]:
    """An IAM wildcard pattern: ``*`` any run of characters, ``?`` exactly one."""
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(body + r"\Z", 0 if case_sensitive else re.IGNORECASE)


def expand_action(pattern: str) -> list[tuple[str, dict[str, Any]]]:
    """``s3:Get*`` -> [(``s3:GetObject``, its privilege data), ...]; [] for an action AWS does not define.
    Action names are case-insensitive in IAM."""
    prefix, _, name = pattern.partition(":")
    match = glob_regex(name, case_sensitive=False).match
    privileges = service(prefix).get("privileges", {})
    return [(f"{prefix}:{n}", data) for n, data in privileges.items() if match(n)]


# A log group's ARN as CloudWatch Logs returns it ends in ":*", and that is the version to use in IAM
# policies for most actions (https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_LogGroup.html).
LOG_GROUP_FORMAT = "arn:${Partition}:logs:${Region}:${Account}:log-group:${LogGroupName}"


def resource_formats(action: str, privilege: dict[str, Any]) -> list[str]:
    """The ARN formats of the resource types ``action`` accepts ([] when it takes only ``*``)."""
    resources = service(action.partition(":")[0])["resources"]
    formats = [resources[t]["arn"] for t in privilege["resource_types"] if t]
    return formats + [f + ":*" for f in formats if f == LOG_GROUP_FORMAT]


def condition_keys(action: str, privilege: dict[str, Any]) -> list[str]:
    """Every condition key ``action`` supports, as listed for it and for the resource types it accepts."""
    resources = service(action.partition(":")[0])["resources"]
    keys = []
    for resource_type, entry in privilege["resource_types"].items():
        keys += entry["condition_keys"]
        if resource_type:
            keys += resources[resource_type]["condition_keys"]
    return keys


def key_supported(key: str, supported: list[str]) -> bool:
    """``kms:EncryptionContext:aws:logs:arn`` is an instance of ``kms:EncryptionContext:${EncryptionContextKey}``."""
    for candidate in supported:
        pattern = re.escape(candidate).replace(r"\$\{", "${")
        pattern = re.sub(r"\$\{[^}]*\}", ".+", pattern)
        if re.fullmatch(pattern, key, re.IGNORECASE):
            return True
    return False


# ---- ARN formats: does a policy's resource pattern reach a resource type's ARN format? -----------------

# In the Service Authorization Reference's formats, a ${Name} in the resource part is one or more of any
# character but ':' and '/' (bucket names, SageMaker names, key ids and the like hold neither), except the
# names below: S3 object keys hold anything; log group and stream names, ECR repositories (namespaces),
# model packages (group/version), IAM paths, alarm names and scalable-target ids may hold '/'.
ANY_TEXT = {"ObjectName"}
MAY_HOLD_SLASH = {
    "LogGroupName",
    "LogStreamName",
    "RepositoryName",
    "ModelPackageName",
    "AlarmName",
    "ResourceId",
}

Token = tuple[str, frozenset[str], bool]  # (literal char or "", characters excluded, repeats)


def policy_tokens(pattern: str) -> list[Token]:
    """A policy's resource: ``*`` any run of characters (including ':' and '/'), ``?`` any one."""
    none: frozenset[str] = frozenset()
    return [("", none, c == "*") if c in "*?" else (c, none, False) for c in pattern]


def format_tokens(arn_format: str) -> list[Token]:
    tokens: list[Token] = []
    for literal, name in re.findall(r"([^$]+)|\$\{([^}]+)\}", arn_format):
        if literal:
            tokens += [(c, frozenset(), False) for c in literal]
            continue
        excluded = (
            frozenset()
            if name in ANY_TEXT
            else frozenset(":")
            if name in MAY_HOLD_SLASH or name.endswith("WithPath")
            else frozenset(":/")
        )
        tokens += [("", excluded, False), ("", excluded, True)]  # one or more
    return tokens


def _one_char_in_both(a: Token, b: Token) -> bool:
    (ca, xa, _), (cb, xb, _) = a, b
    if ca and cb:
        return ca == cb
    if ca:
        return ca not in xb
    if cb:
        return cb not in xa
    return True  # two classes that each exclude at most ':' and '/' share letters


def reaches(pattern: str, arn_format: str) -> bool:
    """Whether some ARN both matches the policy pattern and has the format: an intersection of two
    languages, walked as the product of their automata."""
    p, f = policy_tokens(pattern), format_tokens(arn_format)
    seen: set[tuple[int, int]] = set()
    todo = [(0, 0)]
    while todo:
        i, j = todo.pop()
        if (i, j) in seen:
            continue
        seen.add((i, j))
        if i == len(p) and j == len(f):
            return True
        steps = []
        if i < len(p) and p[i][2]:
            steps.append((i + 1, j))  # p's run ends
        if j < len(f) and f[j][2]:
            steps.append((i, j + 1))  # f's run ends
        if i < len(p) and j < len(f) and _one_char_in_both(p[i], f[j]):
            steps.append((i if p[i][2] else i + 1, j if f[j][2] else j + 1))
        todo += steps
    return False


# ---- rendering the templates' intrinsic functions with placeholder values ---------------------------------

# What Ref and Fn::GetAtt return for each resource type the policies refer to
# (https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-template-resource-type-ref.html,
# each type's "Return values"). The ARN is the Service Authorization Reference's format for the type, with
# the resource's name property (or its logical id) for the name. A log group's Arn attribute ends in ":*"
# (https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_LogGroup.html).
ARN_OF = {
    "AWS::KMS::Key": ("kms", "key", None, ""),
    "AWS::SNS::Topic": ("sns", "topic", "TopicName", ""),
    "AWS::SQS::Queue": ("sqs", "queue", "QueueName", ""),
    "AWS::IAM::Role": ("iam", "role", "RoleName", ""),
    "AWS::Logs::LogGroup": ("logs", "log-group", "LogGroupName", ":*"),
    "AWS::CloudWatch::Alarm": ("cloudwatch", "alarm", "AlarmName", ""),
    "AWS::S3::Bucket": ("s3", "bucket", "BucketName", ""),
    "AWS::Events::Rule": ("events", "rule", "Name", ""),
    "AWS::SageMaker::MlflowTrackingServer": ("sagemaker", "mlflow-tracking-server", "TrackingServerName", ""),
}
REF_IS_ARN = {"AWS::SNS::Topic"}  # Ref of the others here is the name (of a key, its id)
PSEUDO = {"AWS::Partition": PARTITION, "AWS::AccountId": ACCOUNT, "AWS::URLSuffix": "amazonaws.com"}


class Unrenderable(Exception):
    pass


class Renderer:
    def __init__(self, templates: dict[str, dict[str, Any]], region: str) -> None:
        self.templates = templates
        self.pseudo = {**PSEUDO, "AWS::Region": region}
        self.exports = {
            out["Export"]["Name"]: (stack, out["Value"])
            for stack, template in templates.items()
            for out in template.get("Outputs", {}).values()
            if "Export" in out
        }

    def __call__(self, value: Any, stack: str) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, dict) and len(value) == 1:
            ((function, argument),) = value.items()
            if function == "Ref":
                return self.ref(argument, stack)
            if function == "Fn::GetAtt":
                logical_id, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
                return self.get_att(logical_id, attribute, stack)
            if function == "Fn::Join":
                separator, parts = argument
                return separator.join(self(part, stack) for part in parts)
            if function == "Fn::Sub":
                text, variables = (argument, {}) if isinstance(argument, str) else argument

                def substitute(match: re.Match[str]) -> str:
                    name = match.group(1)
                    if name in variables:
                        return self(variables[name], stack)
                    if "." in name:
                        logical_id, attribute = name.split(".", 1)
                        return self.get_att(logical_id, attribute, stack)
                    return self.ref(name, stack)

                return re.sub(r"\$\{([^}!]+)\}", substitute, text)
            if function == "Fn::ImportValue":
                exporter, exported = self.exports[self(argument, stack)]
                return self(exported, exporter)
        raise Unrenderable(json.dumps(value))

    def resource(self, logical_id: str, stack: str) -> dict[str, Any]:
        return dict(self.templates[stack]["Resources"][logical_id])

    def name(self, logical_id: str, stack: str) -> str:
        resource = self.resource(logical_id, stack)
        prop = ARN_OF.get(resource["Type"], (None, None, None, ""))[2]
        given = resource.get("Properties", {}).get(prop) if prop else None
        return self(given, stack) if given is not None else logical_id

    def arn(self, logical_id: str, stack: str) -> str:
        kind = self.resource(logical_id, stack)["Type"]
        if kind not in ARN_OF:
            raise Unrenderable(f"the ARN of a {kind} ({logical_id}): add it to ARN_OF")
        prefix, resource_type, _, suffix = ARN_OF[kind]
        arn_format = service(prefix)["resources"][resource_type]["arn"]
        filled = arn_format.replace("${Partition}", PARTITION).replace("${Account}", ACCOUNT)
        filled = filled.replace("${Region}", self.pseudo["AWS::Region"])
        return re.sub(r"\$\{[^}]+\}", lambda _: self.name(logical_id, stack), filled) + suffix

    def ref(self, name: str, stack: str) -> str:
        if name in self.pseudo:
            return self.pseudo[name]
        kind = self.resource(name, stack)["Type"]
        if kind in REF_IS_ARN:
            return self.arn(name, stack)
        if kind in ARN_OF:
            return self.name(name, stack)
        raise Unrenderable(f"Ref of a {kind} ({name})")

    def get_att(self, logical_id: str, attribute: str, stack: str) -> str:
        if attribute in ("Arn", "TrackingServerArn"):
            return self.arn(logical_id, stack)
        if attribute == "DefaultSecurityGroup":
            return "sg-0123456789abcdef0"
        raise Unrenderable(f"{logical_id}.{attribute}")


# ---- the synthesized app and its policies ---------------------------------------------------------------


@dataclass(frozen=True)
class Statement:
    stack: str
    policy: str  # the logical id of the policy (or role, for inline policies) that holds it
    identity: bool  # an identity policy (IAM); otherwise a resource policy
    roles: tuple[str, ...]  # logical ids of the roles it is attached to
    body: dict[str, Any]

    def listed(self, key: str) -> list[Any]:
        value = self.body.get(key, [])
        return value if isinstance(value, list) else [value]

    def where(self) -> str:
        return f"{self.stack}/{self.policy} {self.body.get('Sid', '')}".strip()


def policy_statements(templates: dict[str, dict[str, Any]]) -> Iterator[Statement]:
    for stack, template in templates.items():
        for logical_id, resource in template["Resources"].items():
            kind, props = resource["Type"], resource.get("Properties", {})
            if kind in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy"):
                roles = tuple(r["Ref"] for r in props.get("Roles", []))
                documents = [(True, roles, props["PolicyDocument"])]
            elif kind == "AWS::IAM::Role":
                documents = [(True, (logical_id,), p["PolicyDocument"]) for p in props.get("Policies", [])]
            else:
                documents = [
                    (False, (), props[key]) for key in ("PolicyDocument", "KeyPolicy") if key in props
                ]
            for identity, roles, document in documents:
                for body in document["Statement"]:
                    yield Statement(stack, logical_id, identity, roles, body)


@dataclass(frozen=True)
class Platform:
    templates: dict[str, dict[str, Any]]
    statements: list[Statement]
    render: Renderer
    roles: dict[str, tuple[str, str]]  # table role -> (stack, logical id)
    values: dict[str, str]  # the table's placeholders


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Platform:
    cfg = load_config(overrides=["infra.schedule=rate(7 days)"])
    app = build_app(cfg, outdir=str(tmp_path_factory.mktemp("cdk")))
    assembly = app.synth()
    stacks = [s for s in app.node.children if isinstance(s, Stack)]
    templates = {s.stack_name: assembly.get_stack_by_name(s.stack_name).template for s in stacks}
    render = Renderer(templates, cfg.project.region)

    def only(kind: type[StackT]) -> StackT:
        (found,) = [s for s in stacks if isinstance(s, kind)]
        return found

    def rendered(stack: Stack, token: str) -> str:
        return render(stack.resolve(token), stack.stack_name)

    def role(stack: Stack, construct: Any) -> tuple[str, str]:
        return stack.stack_name, stack.resolve(construct.node.default_child.logical_id)

    foundation, images_stack, tracking = only(FoundationStack), only(ImagesStack), only(TrackingStack)
    pipeline, deploy = only(PipelineStack), only(DeployStack)
    deployer = deploy.deployer
    names = PlatformNames(cfg.project.name, cfg.project.region, ACCOUNT)
    images = images_stack.images
    values = {
        "partition": PARTITION,
        "region": cfg.project.region,
        "account": ACCOUNT,
        "data": names.bucket("data"),
        "artifacts": names.bucket("artifacts"),
        "key": rendered(foundation, foundation.key.key_arn),
        "images": rendered(images_stack, images.training.repository.repository_arn),
        "mlflow": rendered(tracking, tracking.tracking.arn),
        "group": cfg.model_package_group,
        "endpoint": cfg.endpoint_name,
        "job_role": rendered(pipeline, pipeline.job_role.role_arn),
        "endpoint_role": rendered(deploy, deployer.endpoint_role.role_arn),
        "topic": rendered(foundation, foundation.alarm_topic.topic_arn),
        "error_alarm": rendered(deploy, deployer.rollback_alarms.errors.alarm_name),
        "latency_alarm": rendered(deploy, deployer.rollback_alarms.latency.alarm_name),
        "dead_letters": rendered(deploy, deployer.dead_letters.queue_arn),
        "deployer_logs": rendered(deploy, deployer.function.log_group.log_group_name),
    }
    assert set(values) == set(PLACEHOLDERS)
    assert rendered(images_stack, images.inference.repository.repository_arn) == values["images"]
    roles = {
        "job": role(pipeline, pipeline.job_role),
        "pipeline": role(pipeline, pipeline.pipeline.role),
        "endpoint": role(deploy, deployer.endpoint_role),
        "deployer": role(deploy, deployer.function.role),
    }
    return Platform(templates, list(policy_statements(templates)), render, roles, values)


# ---- 1. every statement against policy_sentry's IAM definition -----------------------------------------


def statement_problems(statement: Statement, render: Renderer) -> list[str]:
    """What is wrong with one statement, by the Service Authorization Reference."""
    problems = []
    expanded = {pattern: expand_action(pattern) for pattern in statement.listed("Action")}
    for pattern, actions in expanded.items():
        if not actions:
            problems.append(f"{pattern}: no such action")
    if "NotAction" in statement.body or "NotResource" in statement.body:
        problems.append("NotAction/NotResource: not checked here, and not used by this project")

    resources = [render(r, statement.stack) for r in statement.listed("Resource")]
    specific = [r for r in resources if r != "*"]
    formats = {a: resource_formats(a, data) for actions in expanded.values() for a, data in actions}
    for resource in specific:
        if not any(reaches(resource, f) for fs in formats.values() for f in fs):
            problems.append(f"{resource}: not an ARN of any resource type {sorted(expanded)} accept")
    if statement.identity and statement.body.get("Effect") == "Allow":
        for pattern, actions in expanded.items():
            granted = [
                a
                for a, _ in actions
                if "*" in resources or any(reaches(r, f) for r in specific for f in formats[a])
            ]
            if actions and not granted:
                problems.append(f"{pattern}: granted on none of its resource types ({specific})")

    for operator, tests in statement.body.get("Condition", {}).items():
        for key in tests:
            if key.lower() in GLOBAL_CONDITION_KEYS:
                continue
            supporting = [
                a
                for actions in expanded.values()
                for a, data in actions
                if key_supported(key, condition_keys(a, data))
            ]
            if not supporting:
                problems.append(f"{operator} {key}: no action of the statement supports this key")
            elif statement.identity and statement.body.get("Effect") == "Allow":
                # An Allow whose condition key is absent from an action's request never allows that action.
                for pattern, actions in expanded.items():
                    if not any(a in supporting for a, _ in actions):
                        problems.append(f"{operator} {key}: {pattern} never carries it, so is never allowed")
    return problems


def test_the_checks_run_on_every_policy_of_the_app(platform: Platform) -> None:
    identity = [s for s in platform.statements if s.identity]
    assert len(identity) > 40 and len({s.policy for s in identity}) >= 7
    assert {s.stack for s in platform.statements if not s.identity} >= {"llm-neuron-mlops-foundation"}


def test_every_statement_names_real_actions_resource_types_and_condition_keys(platform: Platform) -> None:
    problems = [
        f"{s.where()}: {problem}"
        for s in platform.statements
        for problem in statement_problems(s, platform.render)
    ]
    assert problems == []


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        # A misspelled action, and a wildcard that matches nothing.
        ({"Effect": "Allow", "Action": "s3:GetObjects", "Resource": "*"}, "s3:GetObjects: no such action"),
        ({"Effect": "Allow", "Action": "sagemaker:Frobnicate*", "Resource": "*"}, "no such action"),
        # A bucket ARN for an object action, an object ARN for a bucket action.
        ({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b"}, "not an ARN of any"),
        ({"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::b/*"}, "not an ARN of any"),
        # The wrong resource type's prefix, and a SageMaker ARN without a region.
        (
            {
                "Effect": "Allow",
                "Action": "sagemaker:CreateModel",
                "Resource": "arn:aws:sagemaker:us-east-1:1:endpoint-configuration/x",
            },
            "not an ARN of any",
        ),
        (
            {
                "Effect": "Allow",
                "Action": "sagemaker:CreateModel",
                "Resource": "arn:aws:sagemaker::1:model/x",
            },
            "not an ARN",
        ),
        # An action that takes only "*", given a resource.
        (
            {
                "Effect": "Allow",
                "Action": "ec2:DescribeSubnets",
                "Resource": "arn:aws:ec2:us-east-1:1:subnet/*",
            },
            "not an ARN of any",
        ),
        # A condition key that does not exist, and one an action of the statement never carries.
        (
            {
                "Effect": "Allow",
                "Action": "iam:PassRole",
                "Resource": "*",
                "Condition": {"StringEquals": {"iam:PassedToServices": "x"}},
            },
            "no action of the statement supports",
        ),
        (
            {
                "Effect": "Allow",
                "Action": ["cloudwatch:PutMetricData", "cloudwatch:DescribeAlarms"],
                "Resource": "*",
                "Condition": {"StringLike": {"cloudwatch:namespace": "x"}},
            },
            "cloudwatch:DescribeAlarms never carries it",
        ),
    ],
)
def test_the_statement_check_finds_each_kind_of_defect(statement: dict[str, Any], expected: str) -> None:
    problems = statement_problems(Statement("s", "p", True, ("r",), statement), Renderer({}, "us-east-1"))
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize(
    ("pattern", "arn_format", "expected"),
    [
        (
            "arn:aws:logs:us-east-1:1:log-group:/aws/sagemaker/*",
            "arn:${Partition}:logs:${Region}:${Account}:log-group:${LogGroupName}",
            True,
        ),
        (
            "arn:aws:logs:us-east-1:1:log-group:/aws/sagemaker/*",
            "arn:${Partition}:logs:${Region}:${Account}:log-group:${LogGroupName}:log-stream:${LogStreamName}",
            True,
        ),
        (
            "arn:aws:logs:us-east-1:1:log-group:g:*",
            "arn:${Partition}:logs:${Region}:${Account}:log-group:${LogGroupName}",
            False,
        ),
        (
            "arn:aws:sagemaker:us-east-1:1:model-package/g/*",
            "arn:${Partition}:sagemaker:${Region}:${Account}:model-package/${ModelPackageName}",
            True,
        ),
        (
            "arn:aws:sagemaker:us-east-1:1:model-package/g/*",
            "arn:${Partition}:sagemaker:${Region}:${Account}:model-package-group/${ModelPackageGroupName}",
            False,
        ),
        ("arn:aws:s3:::b/*", "arn:${Partition}:s3:::${BucketName}", False),
        ("arn:aws:s3:::b/*", "arn:${Partition}:s3:::${BucketName}/${ObjectName}", True),
        ("*", "arn:${Partition}:sqs:${Region}:${Account}:${QueueName}", True),
    ],
)
def test_a_pattern_reaches_an_arn_format_only_when_some_arn_fits_both(
    pattern: str, arn_format: str, expected: bool
) -> None:
    assert reaches(pattern, arn_format) is expected


def test_policy_sentry_answers_from_the_definition_in_its_wheel_with_no_network(tmp_path: Path) -> None:
    """policy_sentry prefers ~/.policy_sentry/iam-definition.json when one exists (``policy_sentry
    initialize --fetch`` writes it from the live docs); with an empty HOME and every socket refused, it
    must still answer, from the JSON its wheel ships."""
    script = """
import socket
def refuse(*args, **kwargs):
    raise OSError("network access during an offline test")
socket.socket.connect = refuse
socket.create_connection = refuse
from policy_sentry.shared import constants
from policy_sentry.querying.actions import get_action_data
assert constants.DATASTORE_FILE_PATH == constants.BUNDLED_DATASTORE_FILE_PATH, constants.DATASTORE_FILE_PATH
assert get_action_data("sagemaker", "CreateTrainingJob")["sagemaker"]
print("offline ok")
"""
    env = {**os.environ, "HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0 and "offline ok" in proc.stdout, proc.stderr[-2000:]


# ---- 2. the call table: each row granted to its role, on its resource ---------------------------------


def condition_holds(
    operator: str, tests: dict[str, Any], context: dict[str, str], stack: str, render: Renderer
) -> bool:
    """IAM's reading for the operators these policies use: a key missing from the request fails the test."""
    for key, expected in tests.items():
        actual = next((v for k, v in context.items() if k.lower() == key.lower()), None)
        if actual is None:
            return False
        wanted = [render(v, stack) for v in (expected if isinstance(expected, list) else [expected])]
        if operator in ("StringEquals", "ArnEquals"):
            ok = actual in wanted
        elif operator in ("StringLike", "ArnLike"):
            ok = any(glob_regex(w, case_sensitive=True).match(actual) for w in wanted)
        elif operator == "Bool":
            ok = actual.lower() in [w.lower() for w in wanted]
        else:
            raise AssertionError(f"condition operator {operator} is not modelled here")
        if not ok:
            return False
    return True


def allows(
    statement: Statement, action: str, resource: str, context: dict[str, str], render: Renderer
) -> bool:
    if statement.body.get("Effect") != "Allow":
        return False
    if not any(glob_regex(a, case_sensitive=False).match(action) for a in statement.listed("Action")):
        return False
    patterns = [render(r, statement.stack) for r in statement.listed("Resource")]
    if resource == "*":
        matched = "*" in patterns  # an action without resource-level permissions is granted on "*" only
    else:
        matched = any(glob_regex(p, case_sensitive=True).match(resource) for p in patterns)
    conditions = statement.body.get("Condition", {})
    return matched and all(
        condition_holds(op, tests, context, statement.stack, render) for op, tests in conditions.items()
    )


def role_statements(platform: Platform, role: str) -> list[Statement]:
    stack, logical_id = platform.roles[role]
    return [s for s in platform.statements if s.identity and s.stack == stack and logical_id in s.roles]


def call_id(call: Call) -> str:
    return f"{call.role}:{call.api}:{call.action}:{call.resource.rsplit(':', 1)[-1][:40]}"


@pytest.mark.parametrize("call", CALLS, ids=call_id)
def test_each_call_in_the_table_is_granted_to_its_role_on_its_resource(
    platform: Platform, call: Call
) -> None:
    resource = call.resource.format(**platform.values)
    granted = [
        s.where()
        for s in role_statements(platform, call.role)
        if allows(s, call.action, resource, call.context, platform.render)
    ]
    assert granted, f"{call.role} role: nothing allows {call.action} on {resource} ({call.source})"


def test_the_table_names_real_actions_and_sources(platform: Platform) -> None:
    for call in CALLS:
        assert [a for a, _ in expand_action(call.action)] == [call.action], call.action
        assert call.source.startswith("https://docs.aws.amazon.com/") or (ROOT / call.source).is_file(), call
        assert set(re.findall(r"\{(\w+)\}", call.resource)) <= set(PLACEHOLDERS), call


def test_the_grant_check_fails_a_call_outside_the_grant(platform: Platform) -> None:
    """The same check, on calls the roles must not be able to make."""
    values = platform.values
    outside = [
        (
            "deployer",
            "sagemaker:DeleteEndpoint",
            "arn:aws:sagemaker:us-east-1:{account}:endpoint/{endpoint}",
            {},
        ),
        (
            "deployer",
            "sagemaker:CreateModel",
            "arn:aws:sagemaker:us-east-1:{account}:model/someone-elses",
            {},
        ),
        ("deployer", "iam:PassRole", "{endpoint_role}", {"iam:PassedToService": "lambda.amazonaws.com"}),
        ("endpoint", "cloudwatch:DescribeAlarms", "arn:aws:cloudwatch:us-east-1:{account}:alarm:other", {}),
        ("job", "s3:PutObject", "arn:aws:s3:::{data}/datasets/train/x.jsonl", {}),
        ("pipeline", "iam:PassRole", "{endpoint_role}", {"iam:PassedToService": "sagemaker.amazonaws.com"}),
    ]
    for role, action, resource, context in outside:
        statements = role_statements(platform, role)
        assert statements
        assert not any(
            allows(s, action, resource.format(**values), context, platform.render) for s in statements
        )


# The deployer's boto3 clients, by the parameter names its functions take them under, and the services
# handler() creates them for.
CLIENT_PARAMETERS = {"sm": "sagemaker", "s3": "s3", "autoscaling": "application-autoscaling", "sns": "sns"}


def deployer_calls() -> set[str]:
    """``<service>.<method>`` for every method of a client the deployer's code calls or passes on
    (``_exists(sm.describe_endpoint, ...)`` calls it too)."""
    tree = ast.parse((ROOT / DEPLOYER).read_text())
    created: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.comprehension) and isinstance(node.iter, ast.Tuple):
            created |= {
                e.value for e in node.iter.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)
            }
    assert created == set(CLIENT_PARAMETERS.values()), f"handler() creates clients for {sorted(created)}"
    return {
        f"{CLIENT_PARAMETERS[node.value.id]}.{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id in CLIENT_PARAMETERS
    }


def test_every_boto3_call_of_the_deployer_has_a_row_and_every_row_a_call() -> None:
    in_code = deployer_calls()
    assert len(in_code) >= 12  # the walk saw the Lambda's calls
    in_table = {c.api for c in CALLS if c.caller == DEPLOYER}
    assert in_code - in_table == set(), "calls without a row (and so without a checked grant)"
    assert in_table - in_code == set(), "rows for calls the deployer no longer makes"


# ---- 3. auto-rollback alarms, and nothing the pipeline does not use -----------------------------------


def test_the_endpoint_role_reads_exactly_the_two_rollback_alarms(platform: Platform) -> None:
    describe = [
        s
        for s in role_statements(platform, "endpoint")
        if any(a.startswith("cloudwatch:Describe") for a in s.listed("Action"))
    ]
    assert len(describe) == 1 and describe[0].listed("Action") == ["cloudwatch:DescribeAlarms"]
    alarms = sorted(platform.render(r, describe[0].stack) for r in describe[0].listed("Resource"))
    prefix = f"arn:aws:cloudwatch:{platform.values['region']}:{ACCOUNT}:alarm:"
    assert alarms == sorted(prefix + platform.values[a] for a in ("error_alarm", "latency_alarm"))


def test_the_pipeline_role_grants_no_experiments_tracking(platform: Platform) -> None:
    """MLflow is the tracker; SageMaker Experiments actions on the pipeline role would be unused."""
    actions = {a for s in role_statements(platform, "pipeline") for a in s.listed("Action")}
    experiments = {a for a in actions for name, _ in expand_action(a) if re.search(r"Experiment|Trial", name)}
    assert actions and experiments == set()
