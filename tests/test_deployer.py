"""The endpoint deployer Lambda (infra/deploy/runtime/deployer.py) under moto."""

import importlib.util
import json
import sys
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

ROOT = Path(__file__).resolve().parents[1]
REGION = "us-east-1"
GROUP = "llm-neuron-mlops-models"
ENDPOINT = "llm-neuron-mlops-endpoint"
BUCKET = "llm-neuron-mlops-artifacts-123456789012-us-east-1"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/serve:abc"
REPORT = {"target": "inf2", "batch_size": 4, "sequence_length": 512, "tensor_parallel_size": 2}
GOOD_ENV = {
    "SM_ON_BATCH_SIZE": "4",
    "SM_ON_SEQUENCE_LENGTH": "512",
    "SM_ON_TENSOR_PARALLEL_SIZE": "2",
    "SM_ON_MODEL": "/opt/ml/model",
}


def _load_deployer():
    spec = importlib.util.spec_from_file_location("deployer", ROOT / "infra/deploy/runtime/deployer.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["deployer"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


deployer = _load_deployer()


class SageMakerWithUpdate:
    """moto's SageMaker client plus update_endpoint, which moto does not implement. The fake checks the
    request against botocore's model (as the real client would before sending it), moves the endpoint to
    the new config in moto's backend, and treats the variant properties as API_UpdateEndpoint documents:
    "To use the variant properties specified in a new EndpointConfig call when updating an endpoint, set
    RetainAllVariantProperties to false. The default is false." Nothing else is faked."""

    def __init__(self, client):
        self._client = client
        self.updates = []

    def __getattr__(self, name):
        return getattr(self._client, name)

    def update_endpoint(self, **request):
        from botocore.validate import ParamValidator

        shape = self._client.meta.service_model.operation_model("UpdateEndpoint").input_shape
        report = ParamValidator().validate(request, shape)
        assert not report.has_errors(), report.generate_report()
        config = self._client.describe_endpoint_config(EndpointConfigName=request["EndpointConfigName"])
        endpoint = _backend_endpoint()
        endpoint.endpoint_config_name = request["EndpointConfigName"]
        if not request.get("RetainAllVariantProperties"):
            endpoint.production_variants = endpoint._process_production_variants(config["ProductionVariants"])
        self.updates.append(request)
        return {"EndpointArn": endpoint.arn}


def _backend_endpoint():
    from moto.sagemaker.models import sagemaker_backends

    return sagemaker_backends["123456789012"][REGION].endpoints[ENDPOINT]


def autoscale_to(count):
    """What Application Auto Scaling does to the live variant between two deployments."""
    (variant,) = _backend_endpoint().production_variants
    variant["DesiredInstanceCount"] = variant["CurrentInstanceCount"] = count


@pytest.fixture
def world(monkeypatch):
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        # moto's endpoint-config validation lists no ml.inf2.* type (AWS accepts them): accept exactly those.
        from moto.sagemaker.models import FakeEndpointConfig

        original = FakeEndpointConfig.validate_instance_type
        monkeypatch.setattr(
            FakeEndpointConfig,
            "validate_instance_type",
            lambda self, t: None if t.startswith("ml.inf2.") else original(self, t),
        )
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        sm = SageMakerWithUpdate(boto3.client("sagemaker", region_name=REGION))
        sm.create_model_package_group(ModelPackageGroupName=GROUP)
        sm.create_model_package_group(ModelPackageGroupName="someone-elses-models")
        sns = boto3.client("sns", region_name=REGION)
        topic = sns.create_topic(Name="alarms")["TopicArn"]
        sqs = boto3.client("sqs", region_name=REGION)
        queue = sqs.create_queue(QueueName="inbox")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
        autoscaling = boto3.client("application-autoscaling", region_name=REGION)
        env = {
            "ENDPOINT_NAME": ENDPOINT,
            "MODEL_PACKAGE_GROUP": GROUP,
            "INSTANCE_TYPE": "ml.inf2.xlarge",
            "INITIAL_INSTANCE_COUNT": "1",
            "MAX_INSTANCE_COUNT": "2",
            "INVOCATIONS_PER_INSTANCE": "60",
            "CANARY_PERCENT": "10",
            "CANARY_WAIT_SECONDS": "600",
            "DATA_CAPTURE_PERCENT": "100",
            "CAPTURE_S3_URI": f"s3://{BUCKET}/data-capture/{ENDPOINT}",
            "KMS_KEY_ARN": "arn:aws:kms:us-east-1:123456789012:key/abc",
            "ENDPOINT_ROLE_ARN": "arn:aws:iam::123456789012:role/endpoint",
            "SUBNETS": "subnet-1,subnet-2",
            "SECURITY_GROUPS": "sg-1",
            "ALARM_NAMES": f"{ENDPOINT}-5xx,{ENDPOINT}-latency",
            "TOPIC_ARN": topic,
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        clients = {"sagemaker": sm, "s3": s3, "application-autoscaling": autoscaling, "sns": sns}

        def messages():
            got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
            return [json.loads(m["Body"])["Message"] for m in got]

        yield {"sm": sm, "s3": s3, "clients": clients, "messages": messages, "autoscaling": autoscaling}


def package(
    world, run="run1", env=None, status="Approved", group=GROUP, upload=True, report=None, metadata=None
):
    prefix = f"llm-neuron-mlops-finetune/{run}/CompileForInferentia/compiled"
    if upload:
        world["s3"].put_object(Bucket=BUCKET, Key=f"{prefix}/model.tar.gz", Body=b"archive")
        world["s3"].put_object(
            Bucket=BUCKET, Key=f"{prefix}/compile_report.json", Body=json.dumps(report or REPORT)
        )
    arn = world["sm"].create_model_package(
        ModelPackageGroupName=group,
        ModelApprovalStatus=status,
        InferenceSpecification={
            "Containers": [
                {
                    "Image": IMAGE,
                    "ModelDataUrl": f"s3://{BUCKET}/{prefix}/model.tar.gz",
                    "Environment": env or GOOD_ENV,
                }
            ],
            "SupportedContentTypes": ["application/json"],
            "SupportedResponseMIMETypes": ["application/json"],
            "SupportedRealtimeInferenceInstanceTypes": ["ml.inf2.xlarge"],
        },
        CustomerMetadataProperties=metadata
        or {
            "compiled_batch_size": "4",
            "compiled_sequence_length": "512",
            "compiled_tensor_parallel_size": "2",
        },
    )["ModelPackageArn"]
    return arn


def event(arn, status="Approved", group=GROUP):
    return {
        "source": "aws.sagemaker",
        "detail-type": "SageMaker Model Package State Change",
        "detail": {"ModelPackageArn": arn, "ModelPackageGroupName": group, "ModelApprovalStatus": status},
    }


def run(world, evt):
    return deployer.handler(evt, clients=world["clients"])


def test_first_deploy_creates_model_config_endpoint_and_autoscaling(world):
    arn = package(world)
    result = run(world, event(arn))
    assert result["status"] == "created" and result["package"] == arn
    sm = world["sm"]
    name = result["config"]
    model = sm.describe_model(ModelName=name)
    assert model["PrimaryContainer"]["Environment"] == GOOD_ENV
    assert model["PrimaryContainer"]["Image"] == IMAGE
    assert model["VpcConfig"] == {"Subnets": ["subnet-1", "subnet-2"], "SecurityGroupIds": ["sg-1"]}
    config = sm.describe_endpoint_config(EndpointConfigName=name)
    variant = config["ProductionVariants"][0]
    assert variant["InstanceType"] == "ml.inf2.xlarge" and variant["ModelName"] == name
    assert config["KmsKeyId"].startswith("arn:aws:kms:")
    capture = config["DataCaptureConfig"]
    assert capture["EnableCapture"] is True and capture["DestinationS3Uri"].endswith(
        f"data-capture/{ENDPOINT}"
    )
    assert sm.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"] == name
    # Autoscaling waits for the endpoint's IN_SERVICE state change (it cannot register while Creating).
    assert (
        world["autoscaling"].describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"] == []
    )
    in_service = {
        "source": "aws.sagemaker",
        "detail-type": "SageMaker Endpoint State Change",
        "detail": {"EndpointName": ENDPOINT, "EndpointStatus": "IN_SERVICE"},
    }
    assert run(world, in_service)["status"] == "autoscaling registered"
    assert run(world, in_service)["status"] == "unchanged"
    assert (
        run(world, {**in_service, "detail": {"EndpointName": "other", "EndpointStatus": "IN_SERVICE"}})[
            "status"
        ]
        == "ignored"
    )
    targets = world["autoscaling"].describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert (
        targets[0]["ResourceId"] == f"endpoint/{ENDPOINT}/variant/AllTraffic"
        and targets[0]["MaxCapacity"] == 2
    )
    policies = world["autoscaling"].describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
    assert policies[0]["TargetTrackingScalingPolicyConfiguration"]["PredefinedMetricSpecification"] == {
        "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
    }


def test_repeated_event_changes_nothing(world):
    arn = package(world)
    first = run(world, event(arn))
    again = run(world, event(arn))
    assert again["status"] == "unchanged" and again["config"] == first["config"]
    assert len(world["sm"].list_models()["Models"]) == 1
    assert len(world["sm"].list_endpoint_configs()["EndpointConfigs"]) == 1
    assert world["sm"].updates == []


def test_update_of_a_live_endpoint_is_blue_green_canary_with_rollback_alarms(world):
    run(world, event(package(world, "run1")))
    second = package(world, "run2")
    result = run(world, event(second))
    assert result["status"] == "updating" and result["package"] == second
    (update,) = world["sm"].updates
    assert update["EndpointConfigName"] == result["config"] != result["previous_config"]
    assert update["RetainAllVariantProperties"] is True
    policy = update["DeploymentConfig"]["BlueGreenUpdatePolicy"]
    # One instance: a canary may be at most half the fleet, so all at once, watched for the same interval.
    assert policy["TrafficRoutingConfiguration"] == {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 600}
    assert update["DeploymentConfig"]["AutoRollbackConfiguration"] == {
        "Alarms": [{"AlarmName": f"{ENDPOINT}-5xx"}, {"AlarmName": f"{ENDPOINT}-latency"}]
    }


@pytest.mark.parametrize("status", ["Rejected", "PendingManualApproval"])
def test_rejected_and_pending_events_are_ignored(world, status):
    arn = package(world, status=status)
    result = run(world, event(arn, status=status))
    assert result["status"] == "ignored" and status in result["reason"]
    assert world["sm"].list_models()["Models"] == []


def test_a_foreign_group_is_ignored(world):
    arn = package(world, group="someone-elses-models")
    result = run(world, event(arn, group="someone-elses-models"))
    assert result == {"status": "ignored", "reason": f"group 'someone-elses-models' is not {GROUP!r}"}


def test_a_stale_approval_is_ignored(world):
    arn = package(world, status="Rejected")
    assert run(world, event(arn, status="Approved"))["status"] == "ignored"


def test_inconsistent_serving_settings_are_refused_and_reported(world):
    arn = package(world, env={**GOOD_ENV, "SM_ON_BATCH_SIZE": "8"})
    result = run(world, event(arn))
    assert result["status"] == "refused"
    assert "SM_ON_BATCH_SIZE='8' but the model was compiled with 4" in result["reason"]
    assert world["sm"].list_models()["Models"] == []
    (message,) = world["messages"]()
    assert "SM_ON_BATCH_SIZE='8' but the model was compiled with 4" in message


def test_metadata_disagreeing_with_the_report_is_refused(world):
    arn = package(
        world,
        metadata={
            "compiled_batch_size": "2",
            "compiled_sequence_length": "512",
            "compiled_tensor_parallel_size": "2",
        },
    )
    result = run(world, event(arn))
    assert result["status"] == "refused" and "metadata compiled_batch_size='2' disagrees" in result["reason"]


def test_a_missing_artifact_is_refused_and_reported(world):
    arn = package(world, upload=False)
    result = run(world, event(arn))
    assert result["status"] == "refused" and "cannot be read" in result["reason"]
    assert "re-run the pipeline's compile step" in world["messages"]()[0]


@pytest.mark.parametrize("fleet, routing", [(1, "ALL_AT_ONCE"), (2, "CANARY"), (5, "CANARY")])
def test_the_routing_follows_the_live_fleet_not_the_configured_count(fleet, routing):
    settings = deployer.Settings.from_env({**_env_for_settings(), "INITIAL_INSTANCE_COUNT": "1"})
    got = deployer.deployment_config(settings, fleet)["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    assert got["Type"] == routing and got["WaitIntervalInSeconds"] == 600
    if routing == "CANARY":
        assert got["CanarySize"] == {"Type": "CAPACITY_PERCENT", "Value": 10}


def test_an_update_keeps_the_autoscaled_fleet_and_sizes_the_canary_on_it(world):
    run(world, event(package(world, "run1")))  # INITIAL_INSTANCE_COUNT=1
    autoscale_to(4)
    result = run(world, event(package(world, "run2")))
    assert result["status"] == "updating"
    (update,) = world["sm"].updates
    assert update["RetainAllVariantProperties"] is True and "ExcludeRetainedVariantProperties" not in update
    routing = update["DeploymentConfig"]["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    assert routing["Type"] == "CANARY"  # four live instances, though the config says one
    (variant,) = world["sm"].describe_endpoint(EndpointName=ENDPOINT)["ProductionVariants"]
    assert variant["DesiredInstanceCount"] == 4


def test_an_older_version_is_refused_with_the_way_back_and_not_retried(world):
    first = package(world, "run1")
    run(world, event(first))
    run(world, event(package(world, "run2")))
    result = run(world, event(first))  # e.g. v1's approval event re-sent: returned, so never retried
    assert result["status"] == "refused"
    assert "v1" in result["reason"] and "older than v2" in result["reason"]
    assert "`mlops endpoint rollback`" in result["reason"]
    assert world["sm"].describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"] == f"{ENDPOINT}-v2"
    assert len(world["sm"].updates) == 1
    assert any("older than v2" in m for m in world["messages"]())


@pytest.mark.parametrize(
    "mutate, rule",
    [
        (
            lambda mp: mp.setattr(deployer, "STARTUP_HEALTH_CHECK_TIMEOUT_SECONDS", 600),
            "neuron_startup_timeouts",
        ),
        (lambda mp: mp.setattr(deployer, "MODEL_DOWNLOAD_TIMEOUT_SECONDS", 3601), "neuron_startup_timeouts"),
    ],
)
def test_an_endpoint_config_breaking_a_service_rule_is_refused_before_anything_is_created(
    world, monkeypatch, mutate, rule
):
    mutate(monkeypatch)
    result = run(world, event(package(world)))
    assert result["status"] == "refused"
    assert f"{rule}: " in result["reason"] and "https://docs.aws.amazon.com/sagemaker/" in result["reason"]
    assert world["sm"].list_models()["Models"] == []
    assert world["sm"].list_endpoint_configs()["EndpointConfigs"] == []


def test_an_inf1_endpoint_is_refused_before_anything_is_created(world, monkeypatch):
    """No compiled artifact runs on Inf1 (the package check refuses it first); guardrails_not_excluded, which
    refuses Inf1 too, is checked at synth and in test_deploy_rules.py."""
    monkeypatch.setenv("INSTANCE_TYPE", "ml.inf1.xlarge")
    result = run(world, event(package(world)))
    assert result["status"] == "refused"
    assert (
        "artifact_runs_on_the_instance: instance type ml.inf1.xlarge is neither an inf2 nor a trn2 type"
        in (result["reason"])
    )
    assert world["sm"].list_models()["Models"] == []
    assert world["sm"].list_endpoint_configs()["EndpointConfigs"] == []


def _renamed_variant(monkeypatch):
    (variant,) = _backend_endpoint().production_variants
    variant["VariantName"] = "Blue"


def _short_deployment_timeout(monkeypatch):
    original = deployer.deployment_config

    def mutated(settings, fleet):
        config = original(settings, fleet)
        config["BlueGreenUpdatePolicy"]["MaximumExecutionTimeoutInSeconds"] = 1200  # waits: 600 + 600
        return config

    monkeypatch.setattr(deployer, "deployment_config", mutated)


@pytest.mark.parametrize(
    "mutate, rule",
    [
        (lambda mp: (autoscale_to(4), mp.setenv("CANARY_PERCENT", "60")), "canary_at_most_half_the_fleet"),
        (_renamed_variant, "same_variant_names"),
        (_short_deployment_timeout, "deployment_timeout_covers_waits"),
    ],
)
def test_an_update_breaking_a_service_rule_is_refused_before_anything_is_created(
    world, monkeypatch, mutate, rule
):
    run(world, event(package(world, "run1")))
    mutate(monkeypatch)
    result = run(world, event(package(world, "run2")))
    assert result["status"] == "refused"
    assert f"{rule}: " in result["reason"] and "https://docs.aws.amazon.com/sagemaker/" in result["reason"]
    assert world["sm"].updates == []
    assert len(world["sm"].list_models()["Models"]) == 1  # only v1's


def _env_for_settings():
    return {
        "ENDPOINT_NAME": ENDPOINT,
        "MODEL_PACKAGE_GROUP": GROUP,
        "INSTANCE_TYPE": "ml.inf2.xlarge",
        "INITIAL_INSTANCE_COUNT": "1",
        "MAX_INSTANCE_COUNT": "2",
        "INVOCATIONS_PER_INSTANCE": "60",
        "CANARY_PERCENT": "10",
        "CANARY_WAIT_SECONDS": "600",
        "DATA_CAPTURE_PERCENT": "100",
        "CAPTURE_S3_URI": "s3://b/c",
        "KMS_KEY_ARN": "k",
        "ENDPOINT_ROLE_ARN": "r",
        "SUBNETS": "s",
        "SECURITY_GROUPS": "g",
        "ALARM_NAMES": "a,b",
        "TOPIC_ARN": "t",
    }


def test_a_failed_endpoint_is_refused_with_what_to_do(world):
    from moto.sagemaker.models import sagemaker_backends

    run(world, event(package(world, "run1")))
    sagemaker_backends["123456789012"][REGION].endpoints[ENDPOINT].endpoint_status = "Failed"
    result = run(world, event(package(world, "run2")))
    assert (
        result["status"] == "refused"
        and "is Failed" in result["reason"]
        and "delete-endpoint" in result["reason"]
    )


def test_a_busy_endpoint_is_retried_later(world):
    from moto.sagemaker.models import sagemaker_backends

    run(world, event(package(world, "run1")))
    sagemaker_backends["123456789012"][REGION].endpoints[ENDPOINT].endpoint_status = "Updating"
    with pytest.raises(deployer.Busy, match="is Updating; the event will be retried"):
        run(world, event(package(world, "run2")))


def test_an_unexpected_failure_is_reported_and_raised(world, monkeypatch):
    arn = package(world)

    def broken(**kwargs):
        raise RuntimeError("throttled beyond retries")

    monkeypatch.setattr(world["sm"]._client, "create_model", broken)
    with pytest.raises(RuntimeError, match="throttled"):
        run(world, event(arn))
    assert "RuntimeError: throttled beyond retries" in world["messages"]()[0]


def test_the_request_shapes_match_botocore():
    """The deployer's calls against botocore's service model (moto accepts more than AWS does)."""
    import botocore.session
    from botocore.validate import ParamValidator

    settings = deployer.Settings(
        endpoint_name=ENDPOINT,
        model_package_group=GROUP,
        instance_type="ml.inf2.xlarge",
        initial_instance_count=1,
        max_instance_count=2,
        invocations_per_instance=60,
        canary_percent=10,
        canary_wait_seconds=600,
        data_capture_percent=100,
        capture_s3_uri=f"s3://{BUCKET}/data-capture",
        kms_key_arn="arn:aws:kms:us-east-1:1:key/a",
        endpoint_role_arn="arn:aws:iam::123456789012:role/endpoint",
        subnets=["subnet-1"],
        security_groups=["sg-1"],
        alarm_names=["a", "b"],
        topic_arn="arn:aws:sns:us-east-1:1:t",
    )
    model = botocore.session.get_session().get_service_model("sagemaker")
    for operation, request in (
        (
            "UpdateEndpoint",
            {
                "EndpointName": ENDPOINT,
                "EndpointConfigName": "c",
                "RetainAllVariantProperties": True,
                "DeploymentConfig": deployer.deployment_config(settings, 2),
            },
        ),
        ("CreateEndpointConfig", deployer.endpoint_config_request(settings, f"{ENDPOINT}-v1", "arn")),
    ):
        report = ParamValidator().validate(request, model.operation_model(operation).input_shape)
        assert not report.has_errors(), report.generate_report()


def test_an_instance_type_change_releases_autoscaling_first_and_in_service_registers_it_again(
    world, monkeypatch
):
    """endpoint-scaling-update.html: an update that changes the instance type of an autoscaled variant
    fails; the variant must be deregistered first. A model-only update keeps the registration."""
    in_service = {
        "source": "aws.sagemaker",
        "detail-type": "SageMaker Endpoint State Change",
        "detail": {"EndpointName": ENDPOINT, "EndpointStatus": "IN_SERVICE"},
    }

    def targets():
        return world["autoscaling"].describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]

    run(world, event(package(world, "run1")))
    run(world, in_service)
    run(world, event(package(world, "run2")))  # same type: the registration stays
    assert len(targets()) == 1

    monkeypatch.setenv("INSTANCE_TYPE", "ml.inf2.8xlarge")
    result = run(world, event(package(world, "run3")))
    assert result["status"] == "updating" and targets() == []
    config = world["sm"].describe_endpoint_config(EndpointConfigName=result["config"])
    assert config["ProductionVariants"][0]["InstanceType"] == "ml.inf2.8xlarge"
    assert run(world, in_service)["status"] == "autoscaling registered" and len(targets()) == 1


def test_the_blue_green_timeout_covers_a_slow_green_fleet():
    deployer = _load_deployer()
    timeout = deployer.blue_green_timeout(600)
    assert timeout >= (
        deployer.MODEL_DOWNLOAD_TIMEOUT_SECONDS
        + deployer.STARTUP_HEALTH_CHECK_TIMEOUT_SECONDS
        + 600
        + deployer.TERMINATION_WAIT_SECONDS
    )
    assert deployer.blue_green_timeout(86400) == 28800  # the API's maximum (API_BlueGreenUpdatePolicy)


def test_an_artifact_compiled_for_trn2_is_refused_on_an_inf2_endpoint_before_anything_is_created(world):
    """optimum-neuron v0.4.5 export_model.mdx L47: trn2 and inf2 artifacts do not run on each other; its server
    would refuse at startup, after the endpoint exists (optimum/commands/neuron/serve.py L144-146)."""
    arn = package(world, report={**REPORT, "target": "trn2"})
    result = run(world, event(arn))
    assert result["status"] == "refused"
    assert (
        "artifact_runs_on_the_instance: the artifact was compiled for target='trn2', but ml.inf2.xlarge runs inf2 "
        "artifacts only; compile with --target inf2 (the endpoint's family) or serve on an endpoint of that family"
    ) in result["reason"]
    assert (
        world["sm"].list_models()["Models"] == []
        and world["sm"].list_endpoint_configs()["EndpointConfigs"] == []
    )


def test_a_trn2_endpoint_takes_a_trn2_artifact_and_refuses_an_inf2_one(world):
    check_package = deployer.check_package
    arn = package(world, report={**REPORT, "target": "trn2"})
    described = world["sm"].describe_model_package(ModelPackageName=arn)
    assert check_package(described, world["s3"], "ml.trn2.48xlarge") == GOOD_ENV
    inf2 = world["sm"].describe_model_package(ModelPackageName=package(world, run="run2"))
    with pytest.raises(deployer.Refused, match=r"compiled for target='inf2', but ml.trn2.48xlarge runs trn2"):
        check_package(inf2, world["s3"], "ml.trn2.48xlarge")
