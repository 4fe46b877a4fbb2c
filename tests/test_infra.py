"""The CDK app: security gates (cdk-nag packs, IAM rules, cfn-lint) and the stacks' properties,
asserted by value with Match/Capture, never by logical id. Synth runs in-process, offline."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from aws_cdk import assertions

import app as app_module
import infra.nag as nag
from app import build_app
from config import load_config

ROOT = Path(__file__).resolve().parents[1]
STACKS = ("foundation", "images", "tracking", "pipeline", "deploy")
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")


_DEFINITIONS: dict[str, str] = {}


def _cached_definition(cfg):
    """The SageMaker SDK takes ~6 s per definition; the infra variants here share one config for it."""
    from pipelines.definition.builder import pipeline_definition

    key = cfg.model_dump_json(
        include={
            "project": True,
            "training": True,
            "evaluation": True,
            "serving": True,
            "pipeline": True,
            "infra": {"mlflow"},
        }
    )  # what the definition reads
    if key not in _DEFINITIONS:
        _DEFINITIONS[key] = pipeline_definition(cfg)
    return _DEFINITIONS[key]


app_module.pipeline_definition = _cached_definition


def synth(tmp_path, overrides=(), acknowledgements=True):
    """(assembly, validation findings) of the app for a config; synth never raises on findings here."""
    nag.ENABLED = acknowledgements
    nag.ACKNOWLEDGED.clear()
    try:
        app = build_app(load_config(overrides=list(overrides)), outdir=str(tmp_path))
        try:
            assembly = app.synth()
        except RuntimeError as exc:
            if "ValidationFailed" not in str(exc):
                raise
            assembly = None
    finally:
        nag.ENABLED = True
    report = json.loads((tmp_path / "validation-report.json").read_text())
    findings = {
        (v["ruleName"], c["constructPath"])
        for r in report["pluginReports"]
        for v in r["violations"]
        for c in v["violatingConstructs"]
    }
    return assembly, findings


def plugins_that_reported(outdir: Path) -> set[str]:
    return {
        r["pluginName"] for r in json.loads((outdir / "validation-report.json").read_text())["pluginReports"]
    }


# The default config's synth, with CDK's CloudFormation template validation on and strict (app.py
# STRICT_TEMPLATE_VALIDATION): an error from it is a finding here, as a cdk-nag one is.
@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    outdir = tmp_path_factory.mktemp("cdk")
    assembly, findings = synth(outdir, overrides=["infra.validate_templates=true"])
    acknowledged = list(nag.ACKNOWLEDGED)
    assert assembly is not None, (
        f"synth failed on {len(findings)} unacknowledged finding(s): {sorted(findings)[:10]}"
    )
    templates = {name: assembly.get_stack_by_name(f"llm-neuron-mlops-{name}").template for name in STACKS}
    return {
        "templates": templates,
        "findings": findings,
        "acknowledged": acknowledged,
        "plugins": plugins_that_reported(outdir),
    }


def resources(template, kind):
    return [r for r in template["Resources"].values() if r["Type"] == kind]


# ---- security gates --------------------------------------------------------------------------------


def test_no_unacknowledged_findings_from_the_three_packs(platform):
    assert platform["findings"] == set()


def test_each_acknowledgement_covers_exactly_one_real_finding_and_says_why(platform, tmp_path):
    _, raw = synth(tmp_path, acknowledgements=False)  # the default config: template validation off
    assert "CloudFormation Validate" not in plugins_that_reported(tmp_path)
    acknowledged = {(rule, path) for path, rule, _ in platform["acknowledged"]}
    assert len(acknowledged) == len(platform["acknowledged"]), "an acknowledgement is repeated"
    assert acknowledged == raw, (
        f"stale: {sorted(acknowledged - raw)}; unacknowledged: {sorted(raw - acknowledged)}"
    )
    for path, rule, reason in platform["acknowledged"]:
        assert len(reason) >= 40, f"{rule} on {path}: the reason is too thin"
        assert not rule.endswith("IAM5"), f"{rule} on {path}: acknowledge each wildcard by its finding id"


def _policy_documents(templates):
    """(stack, resource type, document) for every policy: IAM, bucket, topic and key policies."""
    for name, template in templates.items():
        for resource in template["Resources"].values():
            props = resource.get("Properties", {})
            docs = [props.get("PolicyDocument"), props.get("KeyPolicy")] + [
                p.get("PolicyDocument") for p in props.get("Policies", [])
            ]
            for doc in docs:
                if doc:
                    yield name, resource["Type"], doc
            for arn in props.get("ManagedPolicyArns", []):
                yield name, resource["Type"], {"ManagedPolicyArn": arn}


def test_no_full_access_managed_policies_no_star_actions_no_service_wide_sagemaker(platform):
    seen = 0
    for stack, kind, doc in _policy_documents(platform["templates"]):
        text = json.dumps(doc)
        assert "FullAccess" not in text, f"{stack}: an AWS managed *FullAccess policy"
        for statement in doc.get("Statement", []):
            actions = statement.get("Action", [])
            actions = [actions] if isinstance(actions, str) else actions
            seen += len(actions)
            assert "*" not in actions, f"{stack}: Action '*'"
            assert "sagemaker:*" not in actions, f"{stack}: service-wide sagemaker:*"
            # Identity policies grant no service-wide wildcard at all (bucket Deny statements and the key
            # policy's account-root kms:* are resource policies, outside this rule).
            if kind.startswith("AWS::IAM::") and statement.get("Effect") == "Allow":
                assert not any(a.endswith(":*") for a in actions), (
                    f"{stack}: a service-wide wildcard in {actions}"
                )
    assert seen > 30  # the scan saw the roles' statements


def test_cloudformation_validate_ran_on_the_default_config(platform):
    # Its report is written even when it passes (CDK's own suppression of W3010, literal AZs, is listed);
    # a violation would be in platform["findings"], which test_no_unacknowledged_findings... holds empty.
    assert "CloudFormation Validate" in platform["plugins"]


def test_template_validation_when_on_fails_synth_on_a_template_error(tmp_path):
    """What infra.validate_templates=true buys: an error stops synth rather than printing a warning
    (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/cloudformation-validate.html), and
    context from cdk.json or `cdk synth -c` cannot make it a warning again."""
    from aws_cdk import CfnResource, Stack

    from app import STRICT_TEMPLATE_VALIDATION

    (flag,) = STRICT_TEMPLATE_VALIDATION
    app = build_app(load_config(overrides=["infra.validate_templates=true"]), outdir=str(tmp_path))
    assert app.node.try_get_context(flag) is True
    stack = next(c for c in app.node.children if isinstance(c, Stack))
    CfnResource(stack, "Topic", type="AWS::SNS::Topic", properties={"NoSuchProperty": "x"})
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
    report = json.loads((tmp_path / "validation-report.json").read_text())
    assert any("NoSuchProperty" in json.dumps(r["violations"]) for r in report["pluginReports"])

    # The CLI hands `-c` and cdk.json context to the app in CDK_CONTEXT_JSON, read by the Node kernel
    # when it starts: so a fresh process, as `cdk synth -c <flag>=false` would run it.
    config = tmp_path / "validate.yaml"
    config.write_text("infra:\n  validate_templates: true\n")
    env = dict(os.environ, CDK_CONTEXT_JSON=json.dumps({flag: False}), MLOPS_CONFIG=str(config))
    code = f"import app; print(app.main().node.try_get_context({flag!r}))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "True"


def test_cfn_lint_finds_no_errors(platform):
    from cfnlint.api import ManualArgs, lint

    for name, template in platform["templates"].items():
        matches = lint(json.dumps(template), config=ManualArgs(regions=["us-east-1"]))
        errors = [f"{m.rule.id} {m.message}" for m in matches if m.rule.id.startswith("E")]
        assert errors == [], f"{name}: {errors}"


# ---- foundation ------------------------------------------------------------------------------------


def test_key_rotates_and_buckets_are_versioned_kms_tls_only_private_and_logged(platform):
    t = assertions.Template.from_json(platform["templates"]["foundation"])
    t.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})
    kms_buckets = [
        b
        for b in resources(platform["templates"]["foundation"], "AWS::S3::Bucket")
        if "aws:kms" in json.dumps(b["Properties"].get("BucketEncryption", {}))
    ]
    assert len(kms_buckets) == 2  # data and artifacts; the access-log bucket is SSE-S3 (S3 requires it)
    for bucket in resources(platform["templates"]["foundation"], "AWS::S3::Bucket"):
        props = bucket["Properties"]
        assert props["VersioningConfiguration"] == {"Status": "Enabled"}
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }
    for bucket in kms_buckets:
        assert "LoggingConfiguration" in bucket["Properties"]
    t.has_resource_properties(
        "AWS::S3::BucketPolicy",
        {
            "PolicyDocument": {
                "Statement": assertions.Match.array_with(
                    [
                        assertions.Match.object_like(
                            {"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
                        )
                    ]
                )
            }
        },
    )
    t.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "LifecycleConfiguration": {
                "Rules": assertions.Match.array_with(
                    [
                        assertions.Match.object_like(
                            {"Prefix": "checkpoints/", "ExpirationInDays": 30, "Status": "Enabled"}
                        ),
                        assertions.Match.object_like({"Prefix": "neuron-cache/", "Status": "Enabled"}),
                    ]
                )
            }
        },
    )


def test_network_is_private_with_the_endpoints_jobs_need(platform):
    template = platform["templates"]["foundation"]
    t = assertions.Template.from_json(template)
    t.resource_count_is("AWS::EC2::InternetGateway", 0)
    t.resource_count_is("AWS::EC2::NatGateway", 0)
    for subnet in resources(template, "AWS::EC2::Subnet"):
        assert subnet["Properties"]["MapPublicIpOnLaunch"] is False
    services = json.dumps(
        [e["Properties"]["ServiceName"] for e in resources(template, "AWS::EC2::VPCEndpoint")]
    )
    for service in ("sagemaker.api", "sagemaker.runtime", "ecr.api", "ecr.dkr", "logs", "sts", "kms", ".s3"):
        assert service in services, service
    t.has_resource_properties("AWS::EC2::FlowLog", {"TrafficType": "ALL"})


# ---- pipeline --------------------------------------------------------------------------------------


def test_pipeline_body_is_the_generated_definition_with_deploy_time_values(platform):
    template = platform["templates"]["pipeline"]
    (pipeline,) = resources(template, "AWS::SageMaker::Pipeline")
    body, values = pipeline["Properties"]["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"]
    golden = (ROOT / "tests/golden/pipeline.json").read_text()
    generated = json.loads(body)
    assert generated["Parameters"] == json.loads(golden)["Parameters"]
    assert [s["Name"] for s in generated["Steps"]] == ["Prepare", "FineTune", "Evaluate", "QualityGate"]
    assert set(values) == {
        "TrainingImageUri",
        "InferenceImageUri",
        "DataBucket",
        "ArtifactsBucket",
        "KmsKeyArn",
        "JobRoleName",
        "JobSecurityGroupId",
        "SourceCommit",
        "PrivateSubnet1",
        "PrivateSubnet2",
        "MlflowTrackingServerArn",
    }
    # The fine-tune tracks to the tracking stack's server: its ARN, imported from that stack.
    (finetune,) = [s for s in generated["Steps"] if s["Name"] == "FineTune"]
    assert finetune["Arguments"]["Environment"]["MLFLOW_TRACKING_URI"] == "${MlflowTrackingServerArn}"
    assert "Fn::ImportValue" in values["MlflowTrackingServerArn"]
    assert "TrackingServerArn" in json.dumps(values["MlflowTrackingServerArn"])
    assert pipeline["Properties"]["PipelineName"] == "llm-neuron-mlops-finetune"
    t = assertions.Template.from_json(template)
    t.has_resource_properties(
        "AWS::SageMaker::ModelPackageGroup", {"ModelPackageGroupName": "llm-neuron-mlops-models"}
    )
    t.has_resource_properties(
        "AWS::Events::Rule",
        {
            "EventPattern": {
                "source": ["aws.sagemaker"],
                "detail-type": ["SageMaker Model Building Pipeline Execution Status Change"],
                "detail": {
                    "currentPipelineExecutionStatus": ["Failed"],
                    "pipelineArn": assertions.Match.any_value(),
                },
            }
        },
    )


def _statements(template, description_part):
    for policy in resources(template, "AWS::IAM::ManagedPolicy"):
        if description_part in policy["Properties"].get("Description", ""):
            return policy["Properties"]["PolicyDocument"]["Statement"]
    raise AssertionError(f"no managed policy described as {description_part!r}")


def test_roles_are_least_privilege(platform):
    template = platform["templates"]["pipeline"]
    pipeline = {s["Sid"]: s for s in _statements(template, "SageMaker Pipelines does")}
    assert set(pipeline) == {
        "RunJobs",
        "RegisterModels",
        "PassJobRole",
        "ReadPropertyFiles",
        "ListArtifacts",
        "DecryptArtifacts",
    }
    assert pipeline["PassJobRole"]["Condition"] == {
        "StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}
    }
    assert "sagemaker:CreateEndpoint" not in json.dumps(pipeline)
    jobs = {s["Sid"]: s for s in _statements(template, "pipeline's containers")}
    assert jobs["ReadData"]["Action"] == "s3:GetObject"  # read-only on the data bucket
    assert not any(
        a.startswith("sagemaker:")
        for s in jobs.values()
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    )
    assert jobs["Metrics"]["Condition"] == {"StringLike": {"cloudwatch:namespace": ["/aws/sagemaker/*"]}}


def test_mlflow_server_and_its_switch(platform, tmp_path):
    t = assertions.Template.from_json(platform["templates"]["tracking"])
    t.has_resource_properties(
        "AWS::SageMaker::MlflowTrackingServer",
        {
            "AutomaticModelRegistration": True,
            "TrackingServerSize": "Small",
            "ArtifactStoreUri": assertions.Match.any_value(),
        },
    )
    assembly, findings = synth(tmp_path, ["infra.mlflow=false", "infra.schedule=rate(7 days)"])
    assert findings == set() and assembly is not None
    names = {s.stack_name for s in assembly.stacks}
    assert "llm-neuron-mlops-tracking" not in names
    pipeline = assembly.get_stack_by_name("llm-neuron-mlops-pipeline").template
    assertions.Template.from_json(pipeline).has_resource_properties(
        "AWS::Events::Rule", {"ScheduleExpression": "rate(7 days)"}
    )
    assert "sagemaker-mlflow" not in json.dumps(pipeline)
    assert "MLFLOW_TRACKING_URI" not in json.dumps(pipeline) and "MlflowTrackingServerArn" not in json.dumps(
        pipeline
    )


def test_images_are_staged_from_containers_and_published_as_parameters(platform):
    t = assertions.Template.from_json(platform["templates"]["images"])
    t.has_resource_properties("AWS::SSM::Parameter", {"Name": "/llm-neuron-mlops/images/training"})
    t.has_resource_properties("AWS::SSM::Parameter", {"Name": "/llm-neuron-mlops/images/inference"})


def test_cdk_app_synthesizes_with_no_credentials_and_no_docker(tmp_path):
    """`python app.py` as `cdk synth` runs it: no AWS variables, no docker on PATH, an empty HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SAGEMAKER_"))}
    env.update(
        HOME=str(tmp_path),
        CDK_OUTDIR=str(tmp_path / "out"),
        PATH=os.path.dirname(sys.executable) + ":/usr/bin:/bin",
        AWS_EC2_METADATA_DISABLED="true",
    )
    if any(Path(d, "docker").exists() for d in env["PATH"].split(":")):
        pytest.skip("a docker binary is on /usr/bin here; this check needs a PATH without it")
    proc = subprocess.run(
        [sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "out"
    for name in STACKS:
        assert (out / f"llm-neuron-mlops-{name}.template.json").exists()
    assert list(out.glob("asset.*/containers/Dockerfile.train"))  # staged, not built


# ---- deploy ----------------------------------------------------------------------------------------


def test_approval_rule_matches_only_approved_packages_of_this_group(platform):
    t = assertions.Template.from_json(platform["templates"]["deploy"])
    t.has_resource_properties(
        "AWS::Events::Rule",
        {
            "EventPattern": {
                "source": ["aws.sagemaker"],
                "detail-type": ["SageMaker Model Package State Change"],
                "detail": {
                    "ModelPackageGroupName": ["llm-neuron-mlops-models"],
                    "ModelApprovalStatus": ["Approved"],
                },
            },
            "Targets": assertions.Match.array_with(
                [
                    assertions.Match.object_like(
                        {
                            "RetryPolicy": {"MaximumRetryAttempts": 2},
                            "DeadLetterConfig": assertions.Match.any_value(),
                        }
                    )
                ]
            ),
        },
    )


def test_deployer_runs_alone_in_the_vpc_with_a_dead_letter_queue_and_the_endpoint_settings(platform):
    template = platform["templates"]["deploy"]
    (function,) = [
        f
        for f in resources(template, "AWS::Lambda::Function")
        if f["Properties"].get("Handler") == "deployer.handler"
    ]
    props = function["Properties"]
    assert props["ReservedConcurrentExecutions"] == 1
    assert props["VpcConfig"]["SubnetIds"] and "TargetArn" in json.dumps(props["DeadLetterConfig"])
    env = props["Environment"]["Variables"]
    assert env["INSTANCE_TYPE"] == "ml.inf2.xlarge" and env["CANARY_PERCENT"] == "10"
    assert env["ALARM_NAMES"] == "llm-neuron-mlops-endpoint-5xx,llm-neuron-mlops-endpoint-latency"
    assert "KmsKeyArn" in props


def test_the_deployer_lambda_reads_exactly_the_environment_the_stack_gives_it(platform):
    """The Lambda package is standalone (stdlib + boto3), so its Settings mirror the construct's by hand:
    every variable the stack sets is read, every one read is set, and the config's values arrive intact."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "deployer_runtime", ROOT / "infra/deploy/runtime/deployer.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["deployer_runtime"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    Settings = module.Settings  # noqa: N806
    template = platform["templates"]["deploy"]
    (function,) = [
        f
        for f in resources(template, "AWS::Lambda::Function")
        if f["Properties"].get("Handler") == "deployer.handler"
    ]
    given = {
        k: v if isinstance(v, str) else "deploy-time-token"
        for k, v in function["Properties"]["Environment"]["Variables"].items()
    }
    read = set()

    class Recorder(dict):
        def __getitem__(self, key):
            read.add(key)
            return super().__getitem__(key)

    settings = Settings.from_env(Recorder(given))  # a variable the stack does not set: KeyError here
    assert read == set(given), f"set but never read: {sorted(set(given) - read)}"
    e = load_config().infra.endpoint
    assert (
        settings.instance_type,
        settings.initial_instance_count,
        settings.max_instance_count,
        settings.invocations_per_instance,
        settings.canary_percent,
        settings.canary_wait_seconds,
        settings.data_capture_percent,
        settings.endpoint_name,
        settings.model_package_group,
    ) == (
        e.instance_type,
        e.initial_instance_count,
        e.max_instance_count,
        e.invocations_per_instance,
        e.canary_percent,
        e.canary_wait_seconds,
        e.data_capture_percent,
        "llm-neuron-mlops-endpoint",
        "llm-neuron-mlops-models",
    )


def test_rollback_alarms_watch_the_endpoint_and_notify(platform):
    t = assertions.Template.from_json(platform["templates"]["deploy"])
    dims = [
        {"Name": "EndpointName", "Value": "llm-neuron-mlops-endpoint"},
        {"Name": "VariantName", "Value": "AllTraffic"},
    ]
    t.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "AlarmName": "llm-neuron-mlops-endpoint-5xx",
            "MetricName": "Invocation5XXErrors",
            "Namespace": "AWS/SageMaker",
            "Dimensions": dims,
            "Threshold": 1,
            # ALARM only: SageMaker rolls back by itself; OK after every rollout would be noise.
            "AlarmActions": assertions.Match.any_value(),
            "OKActions": assertions.Match.absent(),
            "InsufficientDataActions": assertions.Match.absent(),
        },
    )
    t.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "AlarmName": "llm-neuron-mlops-endpoint-latency",
            "MetricName": "ModelLatency",
            "ExtendedStatistic": "p90",
            "Threshold": 5_000_000,
            "Dimensions": dims,
            "AlarmActions": assertions.Match.any_value(),
            "OKActions": assertions.Match.absent(),
            "InsufficientDataActions": assertions.Match.absent(),
        },
    )
    t.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "AlarmName": "llm-neuron-mlops-endpoint-deployer-dead-letters",
            "AlarmActions": assertions.Match.any_value(),
            "OKActions": assertions.Match.any_value(),  # the queue was drained: the failure was dealt with
            "InsufficientDataActions": assertions.Match.absent(),
        },
    )
    t.resource_count_is("AWS::CloudWatch::Dashboard", 1)


def test_deployer_may_deploy_but_not_delete_and_passes_only_the_endpoint_role(platform):
    statements = {s["Sid"]: s for s in _statements(platform["templates"]["deploy"], "endpoint deployer does")}
    actions = json.dumps([s["Action"] for s in statements.values()])
    assert "sagemaker:DeleteEndpoint" not in actions and "sagemaker:DeleteModel" not in actions
    assert statements["PassEndpointRole"]["Condition"] == {
        "StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}
    }
    assert statements["ReadPackages"]["Action"] == "sagemaker:DescribeModelPackage"


def test_deployer_policy_allows_every_call_the_deployer_makes(platform):
    """moto does not enforce IAM: map each boto3 call in the Lambda's code to its IAM action instead."""
    import re

    source = (ROOT / "infra/deploy/runtime/deployer.py").read_text()
    prefixes = {"sm": "sagemaker", "autoscaling": "application-autoscaling", "sns": "sns"}
    wanted = set()
    for client, method in re.findall(r"\b(sm|autoscaling|sns|s3)\.([a-z_]+)\(", source):
        if client == "s3":
            wanted.add("s3:GetObject")  # head_object and get_object both need GetObject
            continue
        wanted.add(f"{prefixes[client]}:{''.join(part.title() for part in method.split('_'))}")
    wanted |= {"sagemaker:UpdateEndpointWeightsAndCapacities", "cloudwatch:PutMetricAlarm", "kms:CreateGrant"}
    granted = set()
    for statement in _statements(platform["templates"]["deploy"], "endpoint deployer does"):
        granted |= set([statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"])
    assert wanted - granted == set()


def test_alarms_can_publish_to_the_encrypted_topic(platform):
    template = platform["templates"]["foundation"]
    (key,) = resources(template, "AWS::KMS::Key")
    principals = json.dumps([s.get("Principal") for s in key["Properties"]["KeyPolicy"]["Statement"]])
    assert "cloudwatch.amazonaws.com" in principals
    topic_policy = json.dumps(resources(template, "AWS::SNS::TopicPolicy"))
    assert "cloudwatch.amazonaws.com" in topic_policy and "sns:Publish" in topic_policy


def test_vpc_endpoints_cover_the_deployer_and_mlflow(platform):
    services = json.dumps(
        [
            e["Properties"]["ServiceName"]
            for e in resources(platform["templates"]["foundation"], "AWS::EC2::VPCEndpoint")
        ]
    )
    for service in (".sns", ".application-autoscaling", "experiments"):
        assert service in services, service


def test_longest_project_name_and_region_fit_s3_bucket_names():
    from infra.names import PlatformNames

    names = PlatformNames(project="a" * 23, region="ap-southeast-3", account="123456789012")
    for kind in ("access-logs", "artifacts", "data"):
        assert len(names.bucket(kind)) <= 63, names.bucket(kind)
    with pytest.raises(Exception, match="3-23 lowercase"):
        load_config(overrides=["project.name=" + "a" * 24])
