"""Every API call made with one of the platform's four working roles, the IAM action it needs and a
resource it needs it on, with the page (or the source file) that says the call is made.

The roles' policies are written by hand in their constructs (``infra/pipeline/job_role.py``,
``infra/pipeline/pipeline_role.py``, ``infra/deploy/endpoint_role.py``, ``infra/deploy/deployer_function.py``);
this table is the independent account of what they must allow. ``tests/test_iam.py`` proves each row is
granted, on its resource and under its request context, by the synthesized templates, and that every
boto3 call in ``infra/deploy/runtime/deployer.py`` has a row. A row's ``resource`` is one concrete
example of what the call touches, with ``{placeholders}`` the test fills from the synthesized app (see
``PLACEHOLDERS``); ``"*"`` marks an action that supports no resource-level permission (the policy must
grant it on ``"*"``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Role = Literal["job", "pipeline", "endpoint", "deployer"]

PLACEHOLDERS = {
    "partition": "the AWS partition",
    "region": "the config's region",
    "account": "the deploy account",
    "data": "the data bucket's name",
    "artifacts": "the artifacts bucket's name",
    "key": "the platform KMS key's ARN",
    "images": "the ECR repository ARN the training and inference images are published to",
    "mlflow": "the MLflow tracking server's ARN",
    "group": "the model package group's name",
    "endpoint": "the endpoint's name",
    "job_role": "the job role's ARN",
    "endpoint_role": "the endpoint role's ARN",
    "topic": "the alarm topic's ARN",
    "error_alarm": "the 5XX rollback alarm's name",
    "latency_alarm": "the latency rollback alarm's name",
    "dead_letters": "the deployer's dead-letter queue ARN",
    "deployer_logs": "the deployer's log group name",
}

# ---- where each fact is written ----------------------------------------------------------------------
ROLES_PAGE = "https://docs.aws.amazon.com/sagemaker/latest/dg/sagemaker-roles.html"
TRAINING_ROLE = ROLES_PAGE + "#sagemaker-roles-createtrainingjob-perms"
PROCESSING_ROLE = ROLES_PAGE + "#sagemaker-roles-createprocessingjob-perms"
MODEL_ROLE = ROLES_PAGE + "#sagemaker-roles-createmodel-perms"
# "the execution role you specify in your request (for example CreateTrainingJob) is used to access
# these [Amazon S3] resources"
FEATURE_S3 = ROLES_PAGE + "#sagemaker-roles-get-execution-role-s3"
# Upload to an SSE-KMS bucket needs kms:GenerateDataKey, download needs kms:Decrypt, on the key.
S3_KMS = "https://docs.aws.amazon.com/AmazonS3/latest/userguide/UsingKMSEncryption.html"
# HeadObject is authorized as s3:GetObject.
HEAD_OBJECT = "https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadObject.html"
SAGEMAKER_LOGS = "https://docs.aws.amazon.com/sagemaker/latest/dg/logging-cloudwatch.html"
# Pipeline execution role: iam:PassRole for the steps' role, Create and Describe for each job type, and
# S3 for JsonGet (property files).
PIPELINE_ROLE = "https://docs.aws.amazon.com/sagemaker/latest/dg/build-and-manage-access.html#build-and-manage-role-permissions"
# The service authorization reference lists each action's dependent actions (e.g. CreateModel ->
# iam:PassRole, sagemaker:AddTags when the request carries Tags).
SAGEMAKER_ACTIONS = (
    "https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonsagemaker.html"
)
# "Ensure that your IAM execution role has permission to perform the cloudwatch:DescribeAlarms action on
# the auto-rollback alarms you specify." An endpoint has no role of its own; its execution role is the
# model's (CreateModel ExecutionRoleArn: "the IAM role that SageMaker can assume to access model artifacts
# and docker image for deployment on ML compute instances").
GUARDRAILS = "https://docs.aws.amazon.com/sagemaker/latest/dg/deployment-guardrails-configuration.html"
CREATE_MODEL = "https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateModel.html"
# "The KMS key policy must grant permission to the IAM role that you specify in your CreateEndpoint,
# UpdateEndpoint requests": the caller's, as CreateEndpoint takes no role.
ENDPOINT_CONFIG_KEY = "https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateEndpointConfig.html#sagemaker-CreateEndpointConfig-request-KmsKeyId"
# Minimum permissions to register and scale an endpoint variant with Application Auto Scaling.
AUTOSCALING = "https://docs.aws.amazon.com/sagemaker/latest/dg/endpoint-auto-scaling-prerequisites.html"
# "If the update would change the instance type for any model that is a target for auto scaling, the
# update fails": the deployer deregisters the variant first.
SCALING_UPDATE = "https://docs.aws.amazon.com/sagemaker/latest/dg/endpoint-scaling-update.html"
# Target tracking creates, describes and deletes its CloudWatch alarms with the caller's permissions.
TARGET_TRACKING = (
    "https://docs.aws.amazon.com/autoscaling/application/userguide/security_iam_id-based-policy-examples.html"
)
# Publishing to an SSE-KMS topic needs kms:GenerateDataKey and kms:Decrypt on its key.
SNS_SSE = "https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html"
LAMBDA_VPC = "https://docs.aws.amazon.com/lambda/latest/dg/configuration-vpc.html"
LAMBDA_LOGS = "https://docs.aws.amazon.com/lambda/latest/dg/monitoring-cloudwatchlogs.html"
LAMBDA_DLQ = (
    "https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html#invocation-dlq"
)
DEPLOYER = "infra/deploy/runtime/deployer.py"
METRICS = "training/metrics.py"  # the mlflow client's REST calls: set_experiment, start_run, log_*, end_run

PASS_TO_SAGEMAKER = {"iam:PassedToService": "sagemaker.amazonaws.com"}
ENDPOINT_VARIANT_SCALING = {
    "application-autoscaling:service-namespace": "sagemaker",
    "application-autoscaling:scalable-dimension": "sagemaker:variant:DesiredInstanceCount",
}


@dataclass(frozen=True)
class Call:
    role: Role
    caller: str  # who makes it: "SageMaker", "SageMaker Pipelines", "Lambda", or a source file
    api: str  # the operation; for a source file, "<boto3 service>.<method>"
    action: str
    resource: str
    source: str
    context: dict[str, str] = field(default_factory=dict)  # request context keys the grant may condition on


ARTIFACT = "arn:{partition}:s3:::{artifacts}/pipelines/run-1/FineTune/output/model.tar.gz"
KEY = "{key}"
LOG_GROUP = "arn:{partition}:logs:{region}:{account}:log-group:"


def _vpc_calls(role: Role, source: str) -> list[Call]:
    """The network interfaces SageMaker (or Lambda) creates in our subnets for a VPC job or model."""
    eni = "arn:{partition}:ec2:{region}:{account}:network-interface/eni-0123456789abcdef0"
    subnet = "arn:{partition}:ec2:{region}:{account}:subnet/subnet-0123456789abcdef0"
    group = "arn:{partition}:ec2:{region}:{account}:security-group/sg-0123456789abcdef0"
    caller = "SageMaker"
    calls = [
        Call(role, caller, "CreateNetworkInterface", "ec2:CreateNetworkInterface", eni, source),
        Call(role, caller, "CreateNetworkInterface", "ec2:CreateNetworkInterface", subnet, source),
        Call(role, caller, "CreateNetworkInterface", "ec2:CreateNetworkInterface", group, source),
        Call(
            role,
            caller,
            "CreateNetworkInterfacePermission",
            "ec2:CreateNetworkInterfacePermission",
            eni,
            source,
        ),
        Call(role, caller, "DeleteNetworkInterface", "ec2:DeleteNetworkInterface", eni, source),
        Call(
            role,
            caller,
            "DeleteNetworkInterfacePermission",
            "ec2:DeleteNetworkInterfacePermission",
            eni,
            source,
        ),
    ]
    calls += [
        Call(role, caller, name, f"ec2:{name}", "*", source)
        for name in (
            "DescribeNetworkInterfaces",
            "DescribeVpcs",
            "DescribeSubnets",
            "DescribeSecurityGroups",
            "DescribeDhcpOptions",
        )
    ]
    return calls


def _container_calls(role: Role, source: str, log_group: str, namespace: str) -> list[Call]:
    """Image pull, logs and metrics of a SageMaker container (training, processing or hosting)."""
    group = LOG_GROUP + log_group
    stream = group + ":log-stream:name/algo-1-1700000000"
    caller = "SageMaker"
    return [
        Call(role, caller, "GetAuthorizationToken", "ecr:GetAuthorizationToken", "*", source),
        *(
            Call(role, caller, name, f"ecr:{name}", "{images}", source)
            for name in ("BatchCheckLayerAvailability", "GetDownloadUrlForLayer", "BatchGetImage")
        ),
        Call(role, caller, "CreateLogGroup", "logs:CreateLogGroup", group, SAGEMAKER_LOGS),
        Call(role, caller, "DescribeLogStreams", "logs:DescribeLogStreams", group, source),
        Call(role, caller, "CreateLogStream", "logs:CreateLogStream", stream, source),
        Call(role, caller, "PutLogEvents", "logs:PutLogEvents", stream, source),
        Call(
            role,
            caller,
            "PutMetricData",
            "cloudwatch:PutMetricData",
            "*",
            source,
            {"cloudwatch:namespace": namespace},
        ),
        *_vpc_calls(role, source),
    ]


JOB_CALLS = [
    Call(
        "job",
        "SageMaker",
        "CreateTrainingJob: input channels",
        "s3:GetObject",
        "arn:{partition}:s3:::{data}/datasets/train/part-00000.jsonl",
        TRAINING_ROLE,
    ),
    Call(
        "job",
        "SageMaker",
        "CreateTrainingJob: input channels",
        "s3:ListBucket",
        "arn:{partition}:s3:::{data}",
        TRAINING_ROLE,
    ),
    Call("job", "SageMaker", "CreateTrainingJob: OutputDataConfig", "s3:PutObject", ARTIFACT, TRAINING_ROLE),
    Call(
        "job",
        "SageMaker",
        "CreateTrainingJob: CheckpointConfig sync",
        "s3:PutObject",
        "arn:{partition}:s3:::{artifacts}/checkpoints/run-1/checkpoint-100/adapter.safetensors",
        FEATURE_S3,
    ),
    Call(
        "job",
        "SageMaker",
        "CreateTrainingJob: CheckpointConfig restore",
        "s3:GetObject",
        "arn:{partition}:s3:::{artifacts}/checkpoints/run-1/checkpoint-100/adapter.safetensors",
        FEATURE_S3,
    ),
    Call(
        "job", "SageMaker", "CreateProcessingJob: ProcessingInputs", "s3:GetObject", ARTIFACT, PROCESSING_ROLE
    ),
    Call(
        "job",
        "SageMaker",
        "CreateProcessingJob: ProcessingInputs",
        "s3:ListBucket",
        "arn:{partition}:s3:::{artifacts}",
        PROCESSING_ROLE,
    ),
    Call(
        "job",
        "SageMaker",
        "CreateProcessingJob: ProcessingOutputConfig",
        "s3:PutObject",
        "arn:{partition}:s3:::{artifacts}/pipelines/run-1/Evaluate/output/evaluation.json",
        PROCESSING_ROLE,
    ),
    Call("job", "SageMaker", "input encrypted with SSE-KMS", "kms:Decrypt", KEY, TRAINING_ROLE),
    Call("job", "SageMaker", "OutputDataConfig.KmsKeyId", "kms:Encrypt", KEY, TRAINING_ROLE),
    Call("job", "SageMaker", "ResourceConfig.VolumeKmsKeyId", "kms:CreateGrant", KEY, TRAINING_ROLE),
    Call("job", "SageMaker", "PutObject to the SSE-KMS artifacts bucket", "kms:GenerateDataKey", KEY, S3_KMS),
    *_container_calls("job", TRAINING_ROLE, "/aws/sagemaker/TrainingJobs", "/aws/sagemaker/TrainingJobs"),
    *(
        Call("job", METRICS, api, f"sagemaker-mlflow:{action}", "{mlflow}", METRICS)
        for api, action in (
            ("mlflow.set_experiment", "GetExperimentByName"),
            ("mlflow.set_experiment", "CreateExperiment"),
            ("mlflow.start_run", "CreateRun"),
            ("mlflow.log_params", "LogBatch"),
            ("mlflow.log_metrics", "LogBatch"),
            ("mlflow.end_run", "UpdateRun"),
        )
    ),
]

_JOB = "arn:{partition}:sagemaker:{region}:{account}:"
PIPELINE_CALLS = [
    Call(
        "pipeline",
        "SageMaker Pipelines",
        "Processing step",
        "sagemaker:CreateProcessingJob",
        _JOB + "processing-job/pipelines-abc123-Prepare-Xyz",
        PIPELINE_ROLE,
    ),
    Call(
        "pipeline",
        "SageMaker Pipelines",
        "Processing step",
        "sagemaker:DescribeProcessingJob",
        _JOB + "processing-job/pipelines-abc123-Prepare-Xyz",
        PIPELINE_ROLE,
    ),
    Call(
        "pipeline",
        "SageMaker Pipelines",
        "Training step",
        "sagemaker:CreateTrainingJob",
        _JOB + "training-job/pipelines-abc123-FineTune-Xyz",
        PIPELINE_ROLE,
    ),
    Call(
        "pipeline",
        "SageMaker Pipelines",
        "Training step",
        "sagemaker:DescribeTrainingJob",
        _JOB + "training-job/pipelines-abc123-FineTune-Xyz",
        PIPELINE_ROLE,
    ),
    Call(
        "pipeline",
        "SageMaker Pipelines",
        "Training step (tags the job)",
        "sagemaker:AddTags",
        _JOB + "training-job/pipelines-abc123-FineTune-Xyz",
        SAGEMAKER_ACTIONS,
    ),
    Call(
        "pipeline",
        "SageMaker Pipelines",
        "RegisterModel step",
        "sagemaker:CreateModelPackage",
        _JOB + "model-package/{group}/7",
        PIPELINE_ROLE,
    ),
    Call(
        "pipeline",
        "SageMaker Pipelines",
        "RegisterModel step",
        "sagemaker:DescribeModelPackage",
        _JOB + "model-package/{group}/7",
        PIPELINE_ROLE,
    ),
    Call(
        "pipeline",
        "SageMaker Pipelines",
        "a step's RoleArn",
        "iam:PassRole",
        "{job_role}",
        PIPELINE_ROLE,
        PASS_TO_SAGEMAKER,
    ),
    Call(
        "pipeline",
        "SageMaker Pipelines",
        "JsonGet of a property file",
        "s3:GetObject",
        "arn:{partition}:s3:::{artifacts}/pipelines/run-1/Evaluate/output/evaluation.json",
        PIPELINE_ROLE,
    ),
    Call(
        "pipeline", "SageMaker Pipelines", "JsonGet of an SSE-KMS property file", "kms:Decrypt", KEY, S3_KMS
    ),
]

ENDPOINT_CALLS = [
    Call(
        "endpoint",
        "SageMaker",
        "CreateModel: PrimaryContainer.ModelDataUrl",
        "s3:GetObject",
        ARTIFACT,
        MODEL_ROLE,
    ),
    Call("endpoint", "SageMaker", "ModelDataUrl encrypted with SSE-KMS", "kms:Decrypt", KEY, S3_KMS),
    Call(
        "endpoint",
        "SageMaker",
        "CreateEndpointConfig.KmsKeyId (instance volume)",
        "kms:CreateGrant",
        KEY,
        ENDPOINT_CONFIG_KEY,
    ),
    Call(
        "endpoint",
        "SageMaker",
        "DataCaptureConfig: captured requests",
        "s3:PutObject",
        "arn:{partition}:s3:::{artifacts}/data-capture/{endpoint}/AllTraffic/2026/01/01/00/part.jsonl",
        FEATURE_S3,
    ),
    Call("endpoint", "SageMaker", "DataCaptureConfig.KmsKeyId", "kms:GenerateDataKey", KEY, S3_KMS),
    Call(
        "endpoint",
        "SageMaker",
        "UpdateEndpoint auto-rollback: watch the 5XX alarm",
        "cloudwatch:DescribeAlarms",
        "arn:{partition}:cloudwatch:{region}:{account}:alarm:{error_alarm}",
        GUARDRAILS,
    ),
    Call(
        "endpoint",
        "SageMaker",
        "UpdateEndpoint auto-rollback: watch the latency alarm",
        "cloudwatch:DescribeAlarms",
        "arn:{partition}:cloudwatch:{region}:{account}:alarm:{latency_alarm}",
        GUARDRAILS,
    ),
    *_container_calls(
        "endpoint", MODEL_ROLE, "/aws/sagemaker/Endpoints/{endpoint}", "/aws/sagemaker/Endpoints"
    ),
]

_SM = "arn:{partition}:sagemaker:{region}:{account}:"
_MODEL = _SM + "model/{endpoint}-v7"
_CONFIG = _SM + "endpoint-config/{endpoint}-v7"
_ENDPOINT = _SM + "endpoint/{endpoint}"
_TARGET_TRACKING_ALARM = (
    "arn:{partition}:cloudwatch:{region}:{account}:alarm:"
    "TargetTracking-endpoint/{endpoint}/variant/AllTraffic-AlarmHigh-0f1e2d3c"
)
_STREAM = LOG_GROUP + "{deployer_logs}:log-stream:2026/01/01/[$LATEST]0123456789abcdef"
DEPLOYER_CALLS = [
    Call(
        "deployer",
        DEPLOYER,
        "sagemaker.describe_model_package",
        "sagemaker:DescribeModelPackage",
        _SM + "model-package/{group}/7",
        DEPLOYER,
    ),
    Call(
        "deployer", DEPLOYER, "sagemaker.describe_endpoint", "sagemaker:DescribeEndpoint", _ENDPOINT, DEPLOYER
    ),
    Call("deployer", DEPLOYER, "sagemaker.describe_model", "sagemaker:DescribeModel", _MODEL, DEPLOYER),
    Call("deployer", DEPLOYER, "sagemaker.create_model", "sagemaker:CreateModel", _MODEL, DEPLOYER),
    Call("deployer", DEPLOYER, "sagemaker.create_model", "sagemaker:AddTags", _MODEL, SAGEMAKER_ACTIONS),
    Call(
        "deployer",
        DEPLOYER,
        "sagemaker.create_model",
        "iam:PassRole",
        "{endpoint_role}",
        CREATE_MODEL,
        PASS_TO_SAGEMAKER,
    ),
    Call(
        "deployer",
        DEPLOYER,
        "sagemaker.describe_endpoint_config",
        "sagemaker:DescribeEndpointConfig",
        _CONFIG,
        DEPLOYER,
    ),
    Call(
        "deployer",
        DEPLOYER,
        "sagemaker.create_endpoint_config",
        "sagemaker:CreateEndpointConfig",
        _CONFIG,
        DEPLOYER,
    ),
    Call(
        "deployer",
        DEPLOYER,
        "sagemaker.create_endpoint_config",
        "sagemaker:AddTags",
        _CONFIG,
        SAGEMAKER_ACTIONS,
    ),
    Call(
        "deployer",
        DEPLOYER,
        "sagemaker.create_endpoint_config",
        "kms:CreateGrant",
        KEY,
        ENDPOINT_CONFIG_KEY,
        {"kms:GrantIsForAWSResource": "true"},
    ),
    # CreateEndpoint and UpdateEndpoint are authorized on the endpoint and on the endpoint config.
    Call(
        "deployer",
        DEPLOYER,
        "sagemaker.create_endpoint",
        "sagemaker:CreateEndpoint",
        _ENDPOINT,
        SAGEMAKER_ACTIONS,
    ),
    Call(
        "deployer",
        DEPLOYER,
        "sagemaker.create_endpoint",
        "sagemaker:CreateEndpoint",
        _CONFIG,
        SAGEMAKER_ACTIONS,
    ),
    Call(
        "deployer", DEPLOYER, "sagemaker.create_endpoint", "sagemaker:AddTags", _ENDPOINT, SAGEMAKER_ACTIONS
    ),
    Call(
        "deployer",
        DEPLOYER,
        "sagemaker.update_endpoint",
        "sagemaker:UpdateEndpoint",
        _ENDPOINT,
        SAGEMAKER_ACTIONS,
    ),
    Call(
        "deployer",
        DEPLOYER,
        "sagemaker.update_endpoint",
        "sagemaker:UpdateEndpoint",
        _CONFIG,
        SAGEMAKER_ACTIONS,
    ),
    Call("deployer", DEPLOYER, "s3.head_object", "s3:GetObject", ARTIFACT, HEAD_OBJECT),
    Call(
        "deployer",
        DEPLOYER,
        "s3.get_object",
        "s3:GetObject",
        "arn:{partition}:s3:::{artifacts}/pipelines/run-1/CompileForInferentia/output/compile_report.json",
        DEPLOYER,
    ),
    Call("deployer", DEPLOYER, "s3.get_object", "kms:Decrypt", KEY, S3_KMS),
    Call(
        "deployer",
        DEPLOYER,
        "application-autoscaling.describe_scalable_targets",
        "application-autoscaling:DescribeScalableTargets",
        "*",
        AUTOSCALING,
    ),
    Call(
        "deployer",
        DEPLOYER,
        "application-autoscaling.register_scalable_target",
        "application-autoscaling:RegisterScalableTarget",
        "*",
        AUTOSCALING,
        ENDPOINT_VARIANT_SCALING,
    ),
    Call(
        "deployer",
        DEPLOYER,
        "application-autoscaling.register_scalable_target",
        "sagemaker:DescribeEndpoint",
        _ENDPOINT,
        AUTOSCALING,
    ),
    Call(
        "deployer",
        DEPLOYER,
        "application-autoscaling.register_scalable_target",
        "sagemaker:DescribeEndpointConfig",
        _CONFIG,
        AUTOSCALING,
    ),
    Call(
        "deployer",
        DEPLOYER,
        "application-autoscaling.register_scalable_target",
        "sagemaker:UpdateEndpointWeightsAndCapacities",
        _ENDPOINT,
        AUTOSCALING,
    ),
    Call(
        "deployer",
        DEPLOYER,
        "application-autoscaling.register_scalable_target",
        "iam:CreateServiceLinkedRole",
        "arn:{partition}:iam::{account}:role/aws-service-role/sagemaker.application-autoscaling.amazonaws.com/"
        "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint",
        AUTOSCALING,
        {"iam:AWSServiceName": "sagemaker.application-autoscaling.amazonaws.com"},
    ),
    Call(
        "deployer",
        DEPLOYER,
        "application-autoscaling.put_scaling_policy",
        "application-autoscaling:PutScalingPolicy",
        "*",
        AUTOSCALING,
        ENDPOINT_VARIANT_SCALING,
    ),
    Call(
        "deployer",
        DEPLOYER,
        "application-autoscaling.deregister_scalable_target",
        "application-autoscaling:DeregisterScalableTarget",
        "*",
        SCALING_UPDATE,
        ENDPOINT_VARIANT_SCALING,
    ),
    *(
        Call(
            "deployer",
            DEPLOYER,
            "application-autoscaling.put_scaling_policy",
            f"cloudwatch:{action}",
            _TARGET_TRACKING_ALARM,
            TARGET_TRACKING,
        )
        for action in ("PutMetricAlarm", "DescribeAlarms", "DeleteAlarms")
    ),
    Call("deployer", DEPLOYER, "sns.publish", "sns:Publish", "{topic}", DEPLOYER),
    Call("deployer", DEPLOYER, "sns.publish", "kms:GenerateDataKey", KEY, SNS_SSE),
    Call("deployer", DEPLOYER, "sns.publish", "kms:Decrypt", KEY, SNS_SSE),
    Call("deployer", "Lambda", "function logs", "logs:CreateLogStream", _STREAM, LAMBDA_LOGS),
    Call("deployer", "Lambda", "function logs", "logs:PutLogEvents", _STREAM, LAMBDA_LOGS),
    Call("deployer", "Lambda", "failed asynchronous event", "sqs:SendMessage", "{dead_letters}", LAMBDA_DLQ),
    *(
        Call("deployer", "Lambda", name, f"ec2:{name}", resource, LAMBDA_VPC)
        for name, resource in (
            (
                "CreateNetworkInterface",
                "arn:{partition}:ec2:{region}:{account}:network-interface/eni-0123456789abcdef0",
            ),
            (
                "CreateNetworkInterface",
                "arn:{partition}:ec2:{region}:{account}:subnet/subnet-0123456789abcdef0",
            ),
            (
                "CreateNetworkInterface",
                "arn:{partition}:ec2:{region}:{account}:security-group/sg-0123456789abcdef0",
            ),
            (
                "DeleteNetworkInterface",
                "arn:{partition}:ec2:{region}:{account}:network-interface/eni-0123456789abcdef0",
            ),
            (
                "AssignPrivateIpAddresses",
                "arn:{partition}:ec2:{region}:{account}:network-interface/eni-0123456789abcdef0",
            ),
            (
                "UnassignPrivateIpAddresses",
                "arn:{partition}:ec2:{region}:{account}:network-interface/eni-0123456789abcdef0",
            ),
            ("DescribeNetworkInterfaces", "*"),
            ("DescribeSubnets", "*"),
        )
    ),
]

CALLS: list[Call] = JOB_CALLS + PIPELINE_CALLS + ENDPOINT_CALLS + DEPLOYER_CALLS
