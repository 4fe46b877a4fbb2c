"""The operator CLI against AWS, under moto: pipeline start/status, models, endpoint, error translation,
and one run of the real CLI as a subprocess against a moto server on loopback."""

import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    DataNotFoundError,
    NoCredentialsError,
    ProfileNotFound,
    TokenRetrievalError,
)
from moto import mock_aws
from typer.testing import CliRunner

from pipelines.cli.app import app
from pipelines.operate import cloud
from pipelines.operate.aws_errors import translate

REGION = "us-east-1"
GROUP = "llm-neuron-mlops-models"
ENDPOINT = "llm-neuron-mlops-endpoint"
PIPELINE = "llm-neuron-mlops-finetune"
BUCKET = "artifacts-bucket"
ROLE = "arn:aws:iam::123456789012:role/pipeline"
MLOPS = str(Path(sys.executable).parent / "mlops")
runner = CliRunner()


class SageMakerFake:
    """moto's SageMaker client plus the two calls moto lacks. Pipeline executions in moto never run, so
    list_pipeline_execution_steps returns the steps a test sets; update_endpoint (for rollback) checks the
    request against botocore's model, as the real client would, and moves the endpoint to the config in
    moto's backend; describe_processing_job returns the ExitMessage a test sets. Everything else is moto."""

    def __init__(self, client):
        self._client = client
        self.steps = []
        self.updates = []
        self.exit_messages = {}

    def __getattr__(self, name):
        return getattr(self._client, name)

    def list_pipeline_execution_steps(self, PipelineExecutionArn, SortOrder="Ascending"):  # noqa: N803
        return {"PipelineExecutionSteps": self.steps}

    def describe_processing_job(self, ProcessingJobName):  # noqa: N803
        """The pipeline's processing jobs never ran in moto: their ExitMessage is what a test sets."""
        return {
            "ProcessingJobName": ProcessingJobName,
            "ExitMessage": self.exit_messages.get(ProcessingJobName, ""),
        }

    def update_endpoint(self, **kwargs):
        from botocore.validate import ParamValidator
        from moto.sagemaker.models import sagemaker_backends

        shape = self._client.meta.service_model.operation_model("UpdateEndpoint").input_shape
        report = ParamValidator().validate(kwargs, shape)
        assert not report.has_errors(), report.generate_report()
        self._client.describe_endpoint_config(EndpointConfigName=kwargs["EndpointConfigName"])
        sagemaker_backends["123456789012"][REGION].endpoints[
            kwargs["EndpointName"]
        ].endpoint_config_name = kwargs["EndpointConfigName"]
        self.updates.append(kwargs)
        return {}


@pytest.fixture
def aws(monkeypatch, tmp_path):
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "COLUMNS": "300",
    }.items():  # wide tables: no wrapped cells
        monkeypatch.setenv(key, value)
    # The CLI's consoles read COLUMNS once, when pipelines.cli.options is first imported, which may have
    # been by an earlier test: set their width too.
    from pipelines.cli import options

    for console in (options.out, options.err):
        monkeypatch.setattr(console, "width", 300)
    with mock_aws():
        from moto.sagemaker.models import FakeEndpointConfig

        # moto's endpoint-config check lists no ml.inf2.* types (AWS accepts them): accept exactly those.
        original = FakeEndpointConfig.validate_instance_type
        monkeypatch.setattr(
            FakeEndpointConfig,
            "validate_instance_type",
            lambda self, t: None if t.startswith("ml.inf2.") else original(self, t),
        )
        sm = SageMakerFake(boto3.client("sagemaker", region_name=REGION))
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        world = {
            "sagemaker": sm,
            "sagemaker-runtime": boto3.client("sagemaker-runtime", region_name=REGION),
            "s3": s3,
        }
        monkeypatch.setattr(cloud, "clients", lambda cfg: world)
        yield world


def mlops(*args):
    return runner.invoke(app, list(args))


def deployed_pipeline(sm):
    sm.create_pipeline(
        PipelineName=PIPELINE,
        RoleArn=ROLE,
        PipelineDefinition=(Path(__file__).parent / "golden/pipeline.json").read_text(),
    )


def register(aws, version_status="PendingManualApproval"):
    aws["s3"].put_object(
        Bucket=BUCKET,
        Key="run/Evaluate/evaluation/evaluation.json",
        Body=json.dumps({"metrics": {"exact_match": {"value": 0.93}, "eval_loss": {"value": 0.015}}}),
    )
    return aws["sagemaker"].create_model_package(
        ModelPackageGroupName=GROUP,
        ModelApprovalStatus=version_status,
        InferenceSpecification={
            "Containers": [
                {
                    "Image": "img",
                    "ModelDataUrl": f"s3://{BUCKET}/run/model.tar.gz",
                    "Environment": {"SM_ON_BATCH_SIZE": "4"},
                }
            ],
            "SupportedContentTypes": ["application/json"],
            "SupportedResponseMIMETypes": ["application/json"],
            "SupportedRealtimeInferenceInstanceTypes": ["ml.inf2.xlarge"],
        },
        ModelMetrics={
            "ModelQuality": {
                "Statistics": {
                    "ContentType": "application/json",
                    "S3Uri": f"s3://{BUCKET}/run/Evaluate/evaluation/evaluation.json",
                }
            }
        },
        CustomerMetadataProperties={"data_sha256": "abc", "compiled_batch_size": "4"},
    )["ModelPackageArn"]


def deploy_version(sm, version):
    name = f"{ENDPOINT}-v{version}"
    sm.create_model(ModelName=name, ExecutionRoleArn=ROLE, PrimaryContainer={"Image": "img"})
    sm.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": name,
                "InstanceType": "ml.inf2.xlarge",
                "InitialInstanceCount": 1,
            }
        ],
    )
    return name


# ---- pipeline -------------------------------------------------------------------------------------------


def test_pipeline_start_validates_parameters_before_any_call(aws):
    deployed_pipeline(aws["sagemaker"])
    bad = mlops(
        "pipeline", "start", "--param", "MaxStep=3", "--param", "LearningRate=fast", "--param", "LoraR=1_6"
    )
    assert bad.exit_code == 2
    assert "--param MaxStep: no such parameter" in bad.output
    assert "--param LearningRate='fast': must be a finite number above 0 and at most 0.1 (" in bad.output
    # Python's int() reads 1_6 as 16, but the raw text is what StartPipelineExecution would get.
    assert "--param LoraR='1_6': must be an integer from 1 to 1024 (" in bad.output
    assert "written in plain ASCII digits" in bad.output
    assert (
        aws["sagemaker"].list_pipeline_executions(PipelineName=PIPELINE)["PipelineExecutionSummaries"] == []
    )
    good = mlops("pipeline", "start", "--param", "MaxSteps=200", "--param", "ModelApprovalStatus=Approved")
    assert good.exit_code == 0 and "started arn:aws:sagemaker:" in good.output
    (execution,) = aws["sagemaker"].list_pipeline_executions(PipelineName=PIPELINE)[
        "PipelineExecutionSummaries"
    ]
    params = aws["sagemaker"].list_pipeline_parameters_for_execution(
        PipelineExecutionArn=execution["PipelineExecutionArn"]
    )["PipelineParameters"]
    assert {"Name": "MaxSteps", "Value": "200"} in params


def test_pipeline_start_against_an_account_without_the_stack_says_so(aws):
    result = mlops("pipeline", "start")
    assert result.exit_code == 1
    assert "deploy the stacks first (`cdk deploy --all`)" in result.output


def test_pipeline_status_shows_steps_failures_and_log_links_and_fails_when_failed(aws):
    deployed_pipeline(aws["sagemaker"])
    assert mlops("pipeline", "status").exit_code == 1  # nothing started yet
    mlops("pipeline", "start")
    t0 = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
    aws["sagemaker"].steps = [
        {
            "StepName": "Prepare",
            "StepStatus": "Succeeded",
            "StartTime": t0,
            "EndTime": t0.replace(minute=4),
            "Metadata": {
                "ProcessingJob": {
                    "Arn": "arn:aws:sagemaker:us-east-1:123456789012:processing-job/pipelines-x-prepare"
                }
            },
        },
        {
            "StepName": "FineTune",
            "StepStatus": "Failed",
            "StartTime": t0.replace(minute=5),
            "EndTime": t0.replace(minute=9),
            "FailureReason": "ClientError: train data has 2 bad lines",
            "Metadata": {
                "TrainingJob": {
                    "Arn": "arn:aws:sagemaker:us-east-1:123456789012:training-job/pipelines-x-finetune"
                }
            },
        },
    ]
    result = mlops("pipeline", "status")
    assert "Prepare" in result.output and "240s" in result.output
    assert "train data has 2 bad lines" in result.output
    # A failed processing step: its reason is the job's ExitMessage (/opt/ml/output/message).
    aws["sagemaker"].steps[0].update(StepStatus="Failed", FailureReason="AlgorithmError: exit code 2")
    aws["sagemaker"].exit_messages["pipelines-x-prepare"] = "train.jsonl:3: no `messages` or `prompt`\n"
    failed = mlops("pipeline", "status")
    assert "train.jsonl:3: no `messages` or `prompt` (AlgorithmError: exit code 2)" in failed.output
    assert (
        "https://us-east-1.console.aws.amazon.com/cloudwatch/home?region=us-east-1#logsV2:log-groups/log-group/"
        "$252Faws$252Fsagemaker$252FProcessingJobs/log-events$3FlogStreamNameFilter$3Dpipelines-x-prepare"
    ) in result.output


# ---- models ---------------------------------------------------------------------------------------------


def test_models_list_show_approve_reject(aws):
    assert "no model package group" in mlops("models", "list").output
    aws["sagemaker"].create_model_package_group(ModelPackageGroupName=GROUP)
    empty = mlops("models", "list")
    assert empty.exit_code == 1 and "no model registered in llm-neuron-mlops-models yet" in empty.output
    register(aws)
    register(aws)
    listed = mlops("models", "list")
    assert listed.exit_code == 0 and "PendingManualApproval" in listed.output
    shown = mlops("models", "show", "1")
    assert shown.exit_code == 0, shown.output
    assert "exact_match" in shown.output and "0.93" in shown.output and "data_sha256" in shown.output
    assert "SM_ON_BATCH_SIZE" in shown.output
    approved = mlops("models", "approve", "2", "--reason", "beats v1 on exact match")
    assert approved.exit_code == 0 and ": Approved" in approved.output
    statuses = {
        p["ModelPackageVersion"]: p["ModelApprovalStatus"]
        for p in aws["sagemaker"].list_model_packages(ModelPackageGroupName=GROUP)["ModelPackageSummaryList"]
    }
    assert statuses[2] == "Approved" and statuses[1] == "PendingManualApproval"
    assert mlops("models", "reject", "1").exit_code == 0
    assert "has no version 9" in mlops("models", "show", "9").output


# ---- endpoint -------------------------------------------------------------------------------------------


def test_endpoint_status_invoke_and_rollback(aws):
    sm = aws["sagemaker"]
    assert "no endpoint llm-neuron-mlops-endpoint" in mlops("endpoint", "status").output
    sm.create_model_package_group(ModelPackageGroupName=GROUP)
    register(aws, "Approved")
    register(aws, "Approved")
    deploy_version(sm, 1)
    sm.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName=deploy_version(sm, 2))
    status = mlops("endpoint", "status")
    assert status.exit_code == 0 and "InService" in status.output and "serving v2" in status.output

    import requests

    # moto's runtime answers with results queued through its API: queue one OpenAI-shaped reply.
    requests.post(
        "http://motoapi.amazonaws.com/moto-api/static/sagemaker/endpoint-results",
        json={
            "account_id": "123456789012",
            "region": REGION,
            "results": [
                {
                    "Body": json.dumps(
                        {"choices": [{"message": {"role": "assistant", "content": "1956-06-30"}}]}
                    ),
                    "ContentType": "application/json",
                }
            ],
        },
    )
    invoked = mlops("endpoint", "invoke", "--prompt", "Convert: the 30th of June, 1956")
    assert invoked.exit_code == 0 and "1956-06-30" in invoked.output

    rolled = mlops("endpoint", "rollback")
    assert rolled.exit_code == 0 and "rolling back v2 -> v1" in rolled.output
    assert sm.updates == [
        {
            "EndpointName": ENDPOINT,
            "EndpointConfigName": f"{ENDPOINT}-v1",
            # The autoscaled instance count stays; v1's config would otherwise reset it to its initial count.
            "RetainAllVariantProperties": True,
            "RetainDeploymentConfig": True,
        }
    ]
    assert "no approved version older than v1" in mlops("endpoint", "rollback").output


def test_rollback_skips_an_approved_version_the_deployer_never_built(aws):
    """The deployer refuses versions older than the one served, so rollback is the only way back and
    can only return to a config that exists: v2 (approved, never deployed) is passed over for v1."""
    sm = aws["sagemaker"]
    sm.create_model_package_group(ModelPackageGroupName=GROUP)
    arns = [register(aws, "Approved") for _ in range(3)]
    deploy_version(sm, 1)
    sm.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName=deploy_version(sm, 3))
    rolled = mlops("endpoint", "rollback")
    assert rolled.exit_code == 0 and "rolling back v3 -> v1" in rolled.output, rolled.output
    assert sm.updates[0]["EndpointConfigName"] == f"{ENDPOINT}-v1"
    # The version left behind is rejected, so a redelivered approval event cannot roll forward to it.
    left = sm.describe_model_package(ModelPackageName=arns[2])
    assert left["ModelApprovalStatus"] == "Rejected" and "rolled back to v1" in left["ApprovalDescription"]
    assert "v3 is now Rejected" in rolled.output


def test_rollback_with_no_older_deployed_version_says_what_to_do(aws):
    sm = aws["sagemaker"]
    sm.create_model_package_group(ModelPackageGroupName=GROUP)
    register(aws, "Approved")
    register(aws, "Approved")
    sm.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName=deploy_version(sm, 2))
    rolled = mlops("endpoint", "rollback")
    assert rolled.exit_code != 0 and sm.updates == []
    assert "no approved version older than v2 was ever deployed (v1" in rolled.output
    assert "`mlops pipeline start`" in rolled.output


# ---- errors ---------------------------------------------------------------------------------------------


def _client_error(code, message="", operation="StartPipelineExecution"):
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


@pytest.mark.parametrize(
    "error, needle",
    [
        (NoCredentialsError(), "no AWS credentials found: run `aws configure`"),
        (
            _client_error("AccessDeniedException", "not authorized"),
            "access denied for StartPipelineExecution in us-east-1",
        ),
        (
            _client_error("ThrottlingException"),
            "AWS throttled StartPipelineExecution: wait a minute and retry",
        ),
        (_client_error("ExpiredTokenException"), "the AWS session has expired"),
        (_client_error("ResourceNotFound", "Pipeline 'x' does not exist."), "deploy the stacks first"),
        (
            _client_error("ValidationException", "bad value"),
            "StartPipelineExecution failed with ValidationException: bad value",
        ),
        (TokenRetrievalError(provider="sso", error_msg="expired"), "the AWS SSO session has expired"),
        (ProfileNotFound(profile="nope"), "The config profile (nope) could not be found: check AWS_PROFILE"),
        (ConnectTimeoutError(endpoint_url="https://api.sagemaker"), "AWS did not answer in time"),
        (DataNotFoundError(data_path="x"), "DataNotFoundError: Unable to load data for: x"),
    ],
)
def test_aws_errors_become_one_line_that_says_what_to_do(error, needle):
    assert needle in translate(error, REGION)
    assert translate(ValueError("not AWS"), REGION) is None


def test_no_credentials_is_one_line_and_debug_shows_the_raw_error(monkeypatch, tmp_path):
    for key in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    result = mlops("models", "list")
    assert result.exit_code == 1
    assert "error: no AWS credentials found" in result.output and "Traceback" not in result.output
    debug = mlops("--debug", "models", "list")
    assert "NoCredentialsError" in debug.output


def test_cli_subprocess_against_a_moto_server(tmp_path):
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        env = {
            **os.environ,
            "AWS_ENDPOINT_URL": f"http://{host}:{port}",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
        }
        sm = boto3.client(
            "sagemaker",
            region_name=REGION,
            endpoint_url=env["AWS_ENDPOINT_URL"],
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

        def run(*a):
            return subprocess.run([MLOPS, *a], env=env, capture_output=True, text=True, timeout=120)

        nothing = run("endpoint", "status")
        assert (
            nothing.returncode == 1 and "no endpoint llm-neuron-mlops-endpoint in us-east-1" in nothing.stdout
        )
        sm.create_model_package_group(ModelPackageGroupName=GROUP)
        sm.create_model_package(
            ModelPackageGroupName=GROUP,
            ModelApprovalStatus="PendingManualApproval",
            InferenceSpecification={
                "Containers": [{"Image": "img"}],
                "SupportedContentTypes": ["application/json"],
                "SupportedResponseMIMETypes": ["application/json"],
            },
        )
        listed = run("models", "list")
        assert listed.returncode == 0 and "PendingManualApproval" in listed.stdout, listed.stderr
        approved = run("models", "approve", "1")
        assert approved.returncode == 0, approved.stderr
        (summary,) = sm.list_model_packages(ModelPackageGroupName=GROUP)["ModelPackageSummaryList"]
        assert summary["ModelApprovalStatus"] == "Approved"
    finally:
        server.stop()
