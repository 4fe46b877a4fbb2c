"""Deploys an approved model package to the Neuron (inf2 or trn2) endpoint (the Lambda behind the Deploy
stack's rule).

Triggered by "SageMaker Model Package State Change" events. It deploys exactly the package ARN in
the event, and only when that package belongs to this project's group and is Approved now (the event
may be stale). Steps, each idempotent so a repeated event changes nothing:

1. check the package: its serving settings (``SM_ON_*``) must equal the shapes in its compile report
   (``compile_report.json`` beside ``model.tar.gz``) and its metadata, its compile target must be the one
   the endpoint's instance family runs (``service_rules.artifact_runs_on_the_instance``), and the artifact
   must exist; otherwise refuse, tell the alarm topic, and change nothing;
2. create the model ``<endpoint>-v<version>`` (VPC, network isolation) unless it exists;
3. create the endpoint config ``<endpoint>-v<version>`` (one variant, data capture to the KMS bucket)
   unless it exists;
4. create the endpoint, or update it with a blue/green canary deployment that rolls back on the
   CloudWatch alarms (5XX errors, model latency) and keeps the autoscaled fleet; nothing when it
   already serves this config;
5. when the endpoint's state-change event says IN_SERVICE, register autoscaling on invocations per
   instance if it is not registered (it cannot be while the endpoint is still Creating).

Refused, each with what to do: a Failed endpoint (only DeleteEndpoint works on it, and this deployer
never deletes); a version older than the one the endpoint serves (it only rolls forward: going back is
``mlops endpoint rollback``, which updates the endpoint itself and never comes through here); a request
that breaks a SageMaker rule botocore cannot check (``service_rules``, beside this file). A refusal is
reported and returned, not raised: retrying cannot change its outcome, so it must not end in the
dead-letter queue.

Failures are published to the alarm topic. Standard library and boto3 only (the Lambda runtime's).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import Any

try:
    from infra.deploy.runtime import service_rules  # imported from the repository: tests and synth
except ModuleNotFoundError:  # the Lambda, whose code root is this folder
    import service_rules  # type: ignore[no-redef]

log = logging.getLogger()
log.setLevel(logging.INFO)

VARIANT = "AllTraffic"
SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"
SHAPES = {
    "SM_ON_BATCH_SIZE": "batch_size",
    "SM_ON_SEQUENCE_LENGTH": "sequence_length",
    "SM_ON_TENSOR_PARALLEL_SIZE": "tensor_parallel_size",
}
METADATA = {
    "SM_ON_BATCH_SIZE": "compiled_batch_size",
    "SM_ON_SEQUENCE_LENGTH": "compiled_sequence_length",
    "SM_ON_TENSOR_PARALLEL_SIZE": "compiled_tensor_parallel_size",
}
# Loading and warming a compiled model on Neuron takes minutes, not the default seconds; the bounds and
# their sources are service_rules.NEURON_STARTUP_SECONDS.
MODEL_DOWNLOAD_TIMEOUT_SECONDS = 1800
STARTUP_HEALTH_CHECK_TIMEOUT_SECONDS = 1800
TERMINATION_WAIT_SECONDS = 600  # the blue fleet stays this long after the shift, for a fast rollback
BUSY = ("Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting")
ENDPOINT_STATE_CHANGE = "SageMaker Endpoint State Change"


class Refused(Exception):
    """The package cannot be deployed as it is (a user-side problem); nothing was changed."""


class Busy(Exception):
    """The endpoint is changing; the event is retried by the Lambda's async retry policy."""


@dataclass(frozen=True)
class Settings:
    endpoint_name: str
    model_package_group: str
    instance_type: str
    initial_instance_count: int
    max_instance_count: int
    invocations_per_instance: int
    canary_percent: int
    canary_wait_seconds: int
    data_capture_percent: int
    capture_s3_uri: str
    kms_key_arn: str
    endpoint_role_arn: str
    subnets: list[str]
    security_groups: list[str]
    alarm_names: list[str]
    topic_arn: str

    @classmethod
    def from_env(cls, env: dict[str, str]) -> Settings:
        return cls(
            endpoint_name=env["ENDPOINT_NAME"],
            model_package_group=env["MODEL_PACKAGE_GROUP"],
            instance_type=env["INSTANCE_TYPE"],
            initial_instance_count=int(env["INITIAL_INSTANCE_COUNT"]),
            max_instance_count=int(env["MAX_INSTANCE_COUNT"]),
            invocations_per_instance=int(env["INVOCATIONS_PER_INSTANCE"]),
            canary_percent=int(env["CANARY_PERCENT"]),
            canary_wait_seconds=int(env["CANARY_WAIT_SECONDS"]),
            data_capture_percent=int(env["DATA_CAPTURE_PERCENT"]),
            capture_s3_uri=env["CAPTURE_S3_URI"],
            kms_key_arn=env["KMS_KEY_ARN"],
            endpoint_role_arn=env["ENDPOINT_ROLE_ARN"],
            subnets=env["SUBNETS"].split(","),
            security_groups=env["SECURITY_GROUPS"].split(","),
            alarm_names=env["ALARM_NAMES"].split(","),
            topic_arn=env["TOPIC_ARN"],
        )


def _split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key


def check_package(package: dict[str, Any], s3: Any, instance_type: str) -> dict[str, str]:
    """The container environment to deploy on ``instance_type``, after checking it against the compile
    report and metadata."""
    container = package["InferenceSpecification"]["Containers"][0]
    env = dict(container.get("Environment", {}))
    data_url = container.get("ModelDataUrl", "")
    if not data_url.startswith("s3://"):
        raise Refused(f"package {package['ModelPackageArn']} has no S3 ModelDataUrl ({data_url!r})")
    bucket, key = _split_s3(data_url)
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except Exception as exc:  # botocore ClientError 404/403
        raise Refused(
            f"the artifact {data_url} of package {package['ModelPackageArn']} cannot be read ({exc}); "
            "re-run the pipeline's compile step or restore the object"
        ) from None
    report_key = key.rsplit("/", 1)[0] + "/compile_report.json" if "/" in key else "compile_report.json"
    try:
        report = json.loads(s3.get_object(Bucket=bucket, Key=report_key)["Body"].read())
    except Exception as exc:
        raise Refused(
            f"no readable compile report at s3://{bucket}/{report_key} ({exc}); the package's serving "
            "settings cannot be checked, so it is not deployed"
        ) from None
    metadata = package.get("CustomerMetadataProperties", {})
    problems = []
    for variable, shape in SHAPES.items():
        compiled = report.get(shape)
        if env.get(variable) != str(compiled):
            problems.append(f"{variable}={env.get(variable)!r} but the model was compiled with {compiled!r}")
        if METADATA[variable] in metadata and metadata[METADATA[variable]] != str(compiled):
            problems.append(
                f"metadata {METADATA[variable]}={metadata[METADATA[variable]]!r} disagrees with the "
                f"compile report ({compiled!r})"
            )
    wrong_target = service_rules.artifact_runs_on_the_instance(report.get("target"), instance_type)
    if wrong_target:
        problems.append(str(wrong_target))
    if problems:
        raise Refused(
            f"package {package['ModelPackageArn']} is inconsistent: "
            + "; ".join(problems)
            + ". The vLLM Neuronx container would fail at startup; register a package whose SM_ON_* "
            "come from its compile report"
        )
    return env


def _exists(call: Any, **kwargs: Any) -> dict[str, Any] | None:
    """The Describe* response, or None when SageMaker says the resource does not exist."""
    try:
        return dict(call(**kwargs))
    except Exception as exc:
        error = getattr(exc, "response", {}).get("Error", {})
        if error.get("Code") == "ValidationException" and "Could not find" in error.get("Message", ""):
            return None
        raise


def deploy(event: dict[str, Any], settings: Settings, sm: Any, s3: Any, autoscaling: Any) -> dict[str, Any]:
    detail = event.get("detail", {})
    arn = detail.get("ModelPackageArn")
    group = detail.get("ModelPackageGroupName")
    if group != settings.model_package_group:
        return {"status": "ignored", "reason": f"group {group!r} is not {settings.model_package_group!r}"}
    if detail.get("ModelApprovalStatus") != "Approved":
        return {
            "status": "ignored",
            "reason": f"status {detail.get('ModelApprovalStatus')!r} is not Approved",
        }
    if not arn:
        raise Refused("the event carries no ModelPackageArn")
    package = sm.describe_model_package(ModelPackageName=arn)
    if package.get("ModelApprovalStatus") != "Approved":  # changed since the event was sent
        return {"status": "ignored", "reason": f"{arn} is {package.get('ModelApprovalStatus')} now"}
    container = package["InferenceSpecification"]["Containers"][0]
    version = package.get("ModelPackageVersion") or arn.rsplit("/", 1)[-1]
    name = f"{settings.endpoint_name}-v{version}"[:63]

    endpoint = _exists(sm.describe_endpoint, EndpointName=settings.endpoint_name)
    if endpoint and endpoint.get("EndpointStatus") == "Failed":
        # DeleteEndpoint is the only call a Failed endpoint accepts, and this deployer never deletes.
        raise Refused(
            f"endpoint {settings.endpoint_name} is Failed ({endpoint.get('FailureReason', 'no reason given')}); "
            f"delete it (`aws sagemaker delete-endpoint --endpoint-name {settings.endpoint_name}`) and "
            f"approve {arn} again"
        )
    serving = served_version(endpoint, settings) if endpoint else None
    if serving is not None and int(version) < serving:
        raise Refused(
            f"v{version} ({arn}) is older than v{serving}, which endpoint {settings.endpoint_name} serves; "
            "an approval event of an older version (re-sent, late, or an old version approved again) never "
            "replaces a newer one. To go back on purpose, run `mlops endpoint rollback`: it returns the "
            "endpoint to the newest approved version older than the one it serves"
        )
    if endpoint and endpoint.get("EndpointConfigName") == name and endpoint.get("EndpointStatus") not in BUSY:
        return {"status": "unchanged", "endpoint": settings.endpoint_name, "config": name, "package": arn}
    if endpoint and endpoint.get("EndpointStatus") in BUSY:
        raise Busy(
            f"endpoint {settings.endpoint_name} is {endpoint['EndpointStatus']}; the event will be retried "
            "(a retry that finds it still busy ends in the dead-letter queue, which alarms)"
        )

    env = check_package(package, s3, settings.instance_type)
    config = endpoint_config_request(settings, name, arn)
    _refuse_broken(service_rules.endpoint_config_problems(config, [container]), arn, "endpoint config")
    if endpoint is not None:
        # Checked before anything is created, so a refused update leaves no model or config behind.
        fleet = service_rules.live_fleet(endpoint, VARIANT) or 0
        deployment = deployment_config(settings, fleet)
        _refuse_broken(
            service_rules.update_problems(deployment, config["ProductionVariants"], endpoint), arn, "update"
        )

    if endpoint is not None:
        release_autoscaling_for_type_change(sm, autoscaling, settings, endpoint)

    if not _exists(sm.describe_model, ModelName=name):
        sm.create_model(
            ModelName=name,
            ExecutionRoleArn=settings.endpoint_role_arn,
            PrimaryContainer={
                "Image": container["Image"],
                "ModelDataUrl": container["ModelDataUrl"],
                "Environment": env,
            },
            VpcConfig={"Subnets": settings.subnets, "SecurityGroupIds": settings.security_groups},
            # The container loads /opt/ml/model and serves; it calls nothing.
            EnableNetworkIsolation=True,
            Tags=[{"Key": "ModelPackageArn", "Value": arn}],
        )
    if not _exists(sm.describe_endpoint_config, EndpointConfigName=name):
        sm.create_endpoint_config(**config)

    if endpoint is None:
        sm.create_endpoint(
            EndpointName=settings.endpoint_name,
            EndpointConfigName=name,
            Tags=[{"Key": "ModelPackageArn", "Value": arn}],
        )
        # Autoscaling can only be registered once the endpoint is InService: its state-change event does it.
        return {"status": "created", "endpoint": settings.endpoint_name, "config": name, "package": arn}
    # API_UpdateEndpoint: "To use the variant properties specified in a new EndpointConfig call when
    # updating an endpoint, set RetainAllVariantProperties to false. The default is false." So without
    # it the autoscaled fleet would shrink back to InitialInstanceCount. No ExcludeRetainedVariantProperties: "If you don't specify a value for
    # ExcludeRetainedVariantProperties, no variant properties are overridden." Changing only the model
    # of an autoscaled variant is allowed ("Update endpoints that use auto scaling",
    # https://docs.aws.amazon.com/sagemaker/latest/dg/endpoint-scaling-update.html).
    sm.update_endpoint(
        EndpointName=settings.endpoint_name,
        EndpointConfigName=name,
        RetainAllVariantProperties=True,
        DeploymentConfig=deployment,
    )
    return {
        "status": "updating",
        "endpoint": settings.endpoint_name,
        "config": name,
        "package": arn,
        "previous_config": endpoint.get("EndpointConfigName"),
    }


def release_autoscaling_for_type_change(
    sm: Any, autoscaling: Any, settings: Settings, endpoint: dict[str, Any]
) -> None:
    """Deregister the variant's scalable target when this update changes its instance type.

    endpoint-scaling-update.html: "If the update would change the instance type for any model that is a
    target for auto scaling, the update fails", and the page says to deregister the variant as a
    scalable target first (which also deletes its scaling policies: API_DeregisterScalableTarget). The
    endpoint's IN_SERVICE event then registers autoscaling again (``ensure_autoscaling``), on the new type.
    A model-only update keeps the registration, as that page allows.
    """
    live = _exists(sm.describe_endpoint_config, EndpointConfigName=endpoint.get("EndpointConfigName", ""))
    variants = {v.get("VariantName"): v for v in (live or {}).get("ProductionVariants", [])}
    live_type = variants.get(VARIANT, {}).get("InstanceType")
    if live_type is None or live_type == settings.instance_type:
        return
    if autoscaling_registered(autoscaling, settings):
        autoscaling.deregister_scalable_target(
            ServiceNamespace="sagemaker",
            ResourceId=scalable_resource(settings),
            ScalableDimension=SCALABLE_DIMENSION,
        )


def served_version(endpoint: dict[str, Any], settings: Settings) -> int | None:
    """The package version of the config the endpoint serves (``<endpoint>-v<version>``); None when this
    deployer did not name it."""
    config = str(endpoint.get("EndpointConfigName", ""))
    prefix = f"{settings.endpoint_name}-v"
    suffix = config[len(prefix) :]
    return int(suffix) if config.startswith(prefix) and suffix.isdigit() else None


def _refuse_broken(broken: list[Any], arn: str, what: str) -> None:
    if broken:
        raise Refused(
            f"the {what} for {arn} breaks SageMaker rules that botocore does not check, so nothing was "
            "changed: " + "; ".join(str(b) for b in broken)
        )


def endpoint_config_request(settings: Settings, name: str, arn: str) -> dict[str, Any]:
    """The CreateEndpointConfig request for version ``name``: one Neuron variant, KMS, data capture."""
    config: dict[str, Any] = {
        "EndpointConfigName": name,
        "KmsKeyId": settings.kms_key_arn,
        "ProductionVariants": [
            {
                "VariantName": VARIANT,
                "ModelName": name,
                "InstanceType": settings.instance_type,
                # Used when the endpoint is created; an update keeps the live fleet's count instead.
                "InitialInstanceCount": settings.initial_instance_count,
                "InitialVariantWeight": 1.0,
                "ModelDataDownloadTimeoutInSeconds": MODEL_DOWNLOAD_TIMEOUT_SECONDS,
                "ContainerStartupHealthCheckTimeoutInSeconds": STARTUP_HEALTH_CHECK_TIMEOUT_SECONDS,
            }
        ],
        "Tags": [{"Key": "ModelPackageArn", "Value": arn}],
    }
    if settings.data_capture_percent > 0:
        config["DataCaptureConfig"] = {
            "EnableCapture": True,
            "InitialSamplingPercentage": settings.data_capture_percent,
            "DestinationS3Uri": settings.capture_s3_uri,
            "KmsKeyId": settings.kms_key_arn,
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
            "CaptureContentTypeHeader": {"JsonContentTypes": ["application/json"]},
        }
    return config


def deployment_config(settings: Settings, fleet: int) -> dict[str, Any]:
    """Blue/green: a canary share of the new fleet first, watched by the alarms, then the rest.

    ``fleet`` is the live variant's DesiredInstanceCount, not the configured initial count: the update
    retains it (RetainAllVariantProperties), so the new (green) fleet is as large as the autoscaled one
    and the canary is ``canary_percent`` of that. A canary must be at most half the fleet
    (service_rules.canary_at_most_half_the_fleet), so a one-instance fleet shifts all at once and is
    watched (baked) for the same interval instead; the alarms roll it back either way. The size stays a
    percentage so that a later ``RetainDeploymentConfig`` (``mlops endpoint rollback``) still fits a fleet
    that has scaled since.
    """
    routing: dict[str, Any] = {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": settings.canary_wait_seconds}
    if fleet >= 2:
        routing = {
            "Type": "CANARY",
            "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": settings.canary_percent},
            "WaitIntervalInSeconds": settings.canary_wait_seconds,
        }
    return {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": routing,
            "TerminationWaitInSeconds": TERMINATION_WAIT_SECONDS,
            "MaximumExecutionTimeoutInSeconds": blue_green_timeout(settings.canary_wait_seconds),
        },
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": name} for name in settings.alarm_names]},
    }


def blue_green_timeout(canary_wait_seconds: int) -> int:
    """MaximumExecutionTimeoutInSeconds of a blue/green update. API_BlueGreenUpdatePolicy asks only that it
    exceed the waits (TerminationWaitInSeconds + WaitIntervalInSeconds) and allows up to 28800 s; whether
    the green fleet's provisioning counts toward it is not documented. So it also covers the green
    fleet's model download and startup health check at their limits, plus ten minutes of margin: a
    compiled Neuron model that is slow to load must not make a healthy rollout time out."""
    worst = (
        MODEL_DOWNLOAD_TIMEOUT_SECONDS
        + STARTUP_HEALTH_CHECK_TIMEOUT_SECONDS
        + canary_wait_seconds
        + TERMINATION_WAIT_SECONDS
        + 600
    )
    return min(worst, 28800)


def ensure_autoscaling(event: dict[str, Any], settings: Settings, autoscaling: Any) -> dict[str, Any]:
    """On the endpoint's "SageMaker Endpoint State Change" to IN_SERVICE: register autoscaling if missing."""
    detail = event.get("detail", {})
    if detail.get("EndpointName") != settings.endpoint_name:
        return {"status": "ignored", "reason": f"endpoint {detail.get('EndpointName')!r} is not ours"}
    if detail.get("EndpointStatus") != "IN_SERVICE":
        return {"status": "ignored", "reason": f"endpoint status {detail.get('EndpointStatus')!r}"}
    resource = scalable_resource(settings)
    if autoscaling_registered(autoscaling, settings):
        return {"status": "unchanged", "autoscaling": resource}
    register_autoscaling(autoscaling, settings)
    return {"status": "autoscaling registered", "autoscaling": resource}


def scalable_resource(settings: Settings) -> str:
    """The variant's ResourceId in Application Auto Scaling."""
    return f"endpoint/{settings.endpoint_name}/variant/{VARIANT}"


def autoscaling_registered(autoscaling: Any, settings: Settings) -> bool:
    found = autoscaling.describe_scalable_targets(
        ServiceNamespace="sagemaker",
        ResourceIds=[scalable_resource(settings)],
        ScalableDimension=SCALABLE_DIMENSION,
    )
    return bool(found.get("ScalableTargets"))


def register_autoscaling(autoscaling: Any, settings: Settings) -> None:
    resource = scalable_resource(settings)
    autoscaling.register_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId=resource,
        ScalableDimension=SCALABLE_DIMENSION,
        MinCapacity=settings.initial_instance_count,
        MaxCapacity=settings.max_instance_count,
    )
    autoscaling.put_scaling_policy(
        PolicyName=f"{settings.endpoint_name}-invocations",
        ServiceNamespace="sagemaker",
        ResourceId=resource,
        ScalableDimension=SCALABLE_DIMENSION,
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": float(settings.invocations_per_instance),
            "PredefinedMetricSpecification": {
                "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
            },
            "ScaleInCooldown": 600,
            "ScaleOutCooldown": 300,
        },
    )


def notify(sns: Any, settings: Settings, subject: str, message: str) -> None:
    sns.publish(TopicArn=settings.topic_arn, Subject=subject[:100], Message=message)


def handler(
    event: dict[str, Any], context: Any = None, clients: dict[str, Any] | None = None
) -> dict[str, Any]:
    settings = Settings.from_env(dict(os.environ))
    if clients is None:
        import boto3

        clients = {name: boto3.client(name) for name in ("sagemaker", "s3", "application-autoscaling", "sns")}
    detail = event.get("detail", {})
    try:
        if event.get("detail-type") == ENDPOINT_STATE_CHANGE:
            result = ensure_autoscaling(event, settings, clients["application-autoscaling"])
        else:
            result = deploy(
                event, settings, clients["sagemaker"], clients["s3"], clients["application-autoscaling"]
            )
    except Refused as exc:
        notify(clients["sns"], settings, f"{settings.endpoint_name}: package not deployed", str(exc))
        log.error("refused: %s", exc)
        return {"status": "refused", "reason": str(exc), "package": detail.get("ModelPackageArn")}
    except Busy:
        raise  # retried by Lambda's asynchronous retry policy
    except Exception as exc:
        notify(
            clients["sns"],
            settings,
            f"{settings.endpoint_name}: deployment failed",
            f"deploying {detail.get('ModelPackageArn')} failed: {type(exc).__name__}: {exc}",
        )
        raise
    log.info(json.dumps(result))
    return result
