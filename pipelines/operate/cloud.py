"""The cloud twin of the operator commands: SageMaker through boto3 clients (tests hand in moto's).

Names come from the config (pipeline, model package group, endpoint), never typed twice. Every
method returns the rows of ``pipelines.operate.platform`` and raises ``NothingThere`` for an empty
account; ``@aws_call`` turns a botocore error into an ``AwsError`` that says in one line what to do
(``pipelines.operate.aws_errors``), which the CLI prints.
"""

from __future__ import annotations

import json
import urllib.parse
import uuid
from datetime import datetime
from functools import cached_property
from typing import Any

from config.schema import ProjectConfig
from pipelines.definition.parameters import checks_definition, coerce_parameters, enforce_plan_with_parameters
from pipelines.operate.aws_errors import NothingThere, aws_call, is_not_found
from pipelines.operate.platform import (
    Approval,
    Decision,
    EndpointStatus,
    ExecutionStatus,
    ModelDetails,
    ModelRow,
    Rollback,
    StepRow,
    completion_text,
)
from training.errors import UserError


def clients(cfg: ProjectConfig) -> dict[str, Any]:
    """boto3 clients for the configured region; AWS_ENDPOINT_URL (e.g. a moto server) is honoured by boto3."""
    import boto3

    session = boto3.Session(region_name=cfg.project.region)
    return {name: session.client(name) for name in ("sagemaker", "sagemaker-runtime", "s3")}


def validate_parameters(cfg: ProjectConfig, overrides: dict[str, str]) -> list[dict[str, str]]:
    """Overrides checked before any AWS call, by the same rules as a local run (name, type, allowed
    values and ranges, s3:// URIs, the fine-tune's hyperparameters as a whole); every problem at once
    (ParameterError). The text is sent as given: a number passes only in a plain ASCII spelling, so the
    text SageMaker gets means the value that was checked (not "1_000" or " 7 ", which Python reads too)."""
    values = coerce_parameters(checks_definition(cfg), overrides)
    enforce_plan_with_parameters(cfg, values, overrides)  # a larger batch must still fit the cores
    return [{"Name": name, "Value": raw} for name, raw in overrides.items()]


def log_link(region: str, metadata: dict[str, Any]) -> str | None:
    """CloudWatch console link to the step's job logs, from the step metadata's job ARN."""
    for key, group in (
        ("TrainingJob", "/aws/sagemaker/TrainingJobs"),
        ("ProcessingJob", "/aws/sagemaker/ProcessingJobs"),
    ):
        arn = metadata.get(key, {}).get("Arn")
        if arn:
            job = arn.rsplit("/", 1)[-1]
            quoted = urllib.parse.quote(urllib.parse.quote(group, safe=""), safe="").replace("%", "$")
            return (
                f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}#logsV2:log-groups/"
                f"log-group/{quoted}/log-events$3FlogStreamNameFilter$3D{job}"
            )
    return None


def _seconds(start: Any, end: Any) -> float | None:
    if not isinstance(start, datetime):
        return None
    finish = end if isinstance(end, datetime) else datetime.now(start.tzinfo)
    return round((finish - start).total_seconds(), 1)


def _outcome(metadata: dict[str, Any]) -> str:
    if "Condition" in metadata:
        return f"outcome: {metadata['Condition'].get('Outcome')}"
    if "RegisterModel" in metadata:
        return f"registered {metadata['RegisterModel'].get('Arn', '')}"
    if "Fail" in metadata:
        return str(metadata["Fail"].get("ErrorMessage", ""))
    return ""


class CloudPlatform:
    """The deployed platform in ``project.region``; clients are made on first use, so a command that
    fails its own checks makes no client and no call."""

    refreshes = True

    def __init__(self, cfg: ProjectConfig) -> None:
        self.cfg = cfg
        self.region = cfg.project.region

    @cached_property
    def _clients(self) -> dict[str, Any]:
        return clients(self.cfg)

    @property
    def sm(self) -> Any:
        return self._clients["sagemaker"]

    # ---- pipeline -----------------------------------------------------------------------------------

    @aws_call
    def start_execution(self, overrides: dict[str, str]) -> str:
        parameters = validate_parameters(self.cfg, overrides)
        response = self.sm.start_pipeline_execution(
            PipelineName=self.cfg.pipeline_name,
            PipelineParameters=parameters,
            ClientRequestToken=str(uuid.uuid4()),
            PipelineExecutionDescription="started with mlops pipeline start",
        )
        return str(response["PipelineExecutionArn"])

    @aws_call
    def resolve_execution(self, execution: str | None) -> str:
        """An execution ARN from an ARN, an execution id, or None (the newest)."""
        cfg = self.cfg
        if execution and execution.startswith("arn:"):
            return execution
        summaries = self.sm.list_pipeline_executions(
            PipelineName=cfg.pipeline_name, SortBy="CreationTime", SortOrder="Descending"
        ).get("PipelineExecutionSummaries", [])
        if execution:
            for summary in summaries:
                if summary["PipelineExecutionArn"].rsplit("/", 1)[-1] == execution:
                    return str(summary["PipelineExecutionArn"])
            raise NothingThere(f"no execution {execution!r} of pipeline {cfg.pipeline_name}")
        if not summaries:
            raise NothingThere(f"pipeline {cfg.pipeline_name} has no executions yet: `mlops pipeline start`")
        return str(summaries[0]["PipelineExecutionArn"])

    @aws_call
    def execution_status(self, execution: str | None) -> ExecutionStatus:
        arn = self.resolve_execution(execution)
        described = self.sm.describe_pipeline_execution(PipelineExecutionArn=arn)
        listed = self.sm.list_pipeline_execution_steps(PipelineExecutionArn=arn, SortOrder="Ascending")
        steps = [
            StepRow(
                name=step["StepName"],
                status=step.get("StepStatus", ""),
                seconds=_seconds(step.get("StartTime"), step.get("EndTime")),
                detail=self._failure(step) or _outcome(step.get("Metadata", {})),
                logs=log_link(self.cfg.project.region, step.get("Metadata", {})),
            )
            for step in listed.get("PipelineExecutionSteps", [])
        ]
        return ExecutionStatus(
            execution=arn,
            status=described.get("PipelineExecutionStatus", ""),
            failure=described.get("FailureReason", ""),
            steps=steps,
        )

    def _failure(self, step: dict[str, Any]) -> str:
        """Why a step failed. A processing job's own reason is its ExitMessage, the first 1 KB of
        /opt/ml/output/message (byoc-metadata.html); the step's FailureReason only gives the exit code."""
        reason = str(step.get("FailureReason", ""))
        job = step.get("Metadata", {}).get("ProcessingJob", {}).get("Arn")
        if step.get("StepStatus") != "Failed" or not job:
            return reason
        message = str(
            self.sm.describe_processing_job(ProcessingJobName=job.rsplit("/", 1)[-1]).get("ExitMessage", "")
        ).strip()
        return f"{message} ({reason})" if message and reason else message or reason

    # ---- models -------------------------------------------------------------------------------------

    @aws_call
    def models(self) -> list[ModelRow]:
        cfg, group = self.cfg, self.cfg.model_package_group
        try:
            self.sm.describe_model_package_group(ModelPackageGroupName=group)
        except Exception as exc:
            if is_not_found(exc):
                raise NothingThere(
                    f"no model package group {group} in {cfg.project.region}: deploy the stacks "
                    "(`cdk deploy --all`)"
                ) from None
            raise
        summaries = self.sm.list_model_packages(
            ModelPackageGroupName=group, SortBy="CreationTime", SortOrder="Descending"
        ).get("ModelPackageSummaryList", [])
        if not summaries:
            raise NothingThere(
                f"no model registered in {group} yet: run the pipeline (`mlops pipeline start`)"
            )
        return [
            ModelRow(
                version=int(s.get("ModelPackageVersion") or s["ModelPackageArn"].rsplit("/", 1)[-1]),
                status=s.get("ModelApprovalStatus", ""),
                created=str(s.get("CreationTime", ""))[:19],
                arn=s["ModelPackageArn"],
            )
            for s in summaries
        ]

    @aws_call
    def package_arn(self, version: int) -> str:
        for row in self.models():
            if row.version == version:
                return row.arn
        raise NothingThere(
            f"{self.cfg.model_package_group} has no version {version}: see `mlops models list`"
        )

    @aws_call
    def model(self, version: int) -> ModelDetails:
        package = self.sm.describe_model_package(ModelPackageName=self.package_arn(version))
        container = package["InferenceSpecification"]["Containers"][0]
        return ModelDetails(
            version=version,
            status=package.get("ModelApprovalStatus", ""),
            arn=package["ModelPackageArn"],
            metrics=self._quality_metrics(package),
            metadata=package.get("CustomerMetadataProperties", {}),
            serving=container.get("Environment", {}),
            artifact=container.get("ModelDataUrl", ""),
            image=container.get("Image", ""),
            instance_types=package["InferenceSpecification"].get(
                "SupportedRealtimeInferenceInstanceTypes", []
            ),
        )

    def _quality_metrics(self, package: dict[str, Any]) -> dict[str, Any]:
        uri = package.get("ModelMetrics", {}).get("ModelQuality", {}).get("Statistics", {}).get("S3Uri", "")
        if not uri.startswith("s3://"):
            return {}
        bucket, _, key = uri[5:].partition("/")
        try:
            body = json.loads(self._clients["s3"].get_object(Bucket=bucket, Key=key)["Body"].read())
        except Exception as exc:  # the package stays showable without its statistics
            return {"(unavailable)": f"{uri}: {exc}"}
        return {k: v.get("value") for k, v in body.get("metrics", {}).items() if isinstance(v, dict)}

    @aws_call
    def set_approval(self, version: int, status: Decision, reason: str | None) -> Approval:
        arn = self.package_arn(version)
        kwargs = {"ModelPackageArn": arn, "ModelApprovalStatus": status}
        if reason:
            kwargs["ApprovalDescription"] = reason
        self.sm.update_model_package(**kwargs)
        follows = (
            f"the deployer now rolls it out to {self.cfg.endpoint_name}: `mlops endpoint status`"
            if status == "Approved"
            else ""
        )
        return Approval(arn=arn, status=status, next_step=follows)

    # ---- endpoint -----------------------------------------------------------------------------------

    @aws_call
    def endpoint_status(self) -> EndpointStatus:
        name = self.cfg.endpoint_name
        try:
            endpoint = self.sm.describe_endpoint(EndpointName=name)
        except Exception as exc:
            if is_not_found(exc):
                raise NothingThere(
                    f"no endpoint {name} in {self.cfg.project.region}: approve a model "
                    "(`mlops models approve VERSION`) and the deployer creates it"
                ) from None
            raise
        instances = ", ".join(
            f"{v.get('VariantName')}: {v.get('CurrentInstanceCount')}/{v.get('DesiredInstanceCount')}"
            for v in endpoint.get("ProductionVariants", [])
        )
        config = endpoint.get("EndpointConfigName", "")
        return EndpointStatus(
            name=name,
            status=endpoint.get("EndpointStatus", ""),
            version=self._config_version(config),
            serving=config,
            instances=instances,
            failure=endpoint.get("FailureReason", ""),
        )

    def _config_version(self, config: str) -> int | None:
        prefix = f"{self.cfg.endpoint_name}-v"
        return (
            int(config[len(prefix) :])
            if config.startswith(prefix) and config[len(prefix) :].isdigit()
            else None
        )

    @aws_call
    def invoke(self, prompt: str, max_tokens: int) -> str:
        endpoint = self.cfg.endpoint_name
        body = {"messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens, "temperature": 0}
        response = self._clients["sagemaker-runtime"].invoke_endpoint(
            EndpointName=endpoint,
            ContentType="application/json",
            Accept="application/json",
            Body=json.dumps(body).encode(),
        )
        raw = response["Body"].read()
        try:
            reply = json.loads(raw)
        except ValueError:
            reply = None  # not JSON: completion_text shows the raw body
        return completion_text(reply, endpoint, raw)

    @aws_call
    def rollback(self) -> Rollback:
        """Point the endpoint at the newest approved version older than the one it serves that the
        deployer has built (its endpoint config ``<endpoint>-v<version>`` exists).

        This path does not go through the deployer Lambda, which refuses any version older than the one
        served (infra/deploy/runtime/deployer.py): going back is only ever this command. The version it
        leaves is set to Rejected, so it is not rolled out again unless someone approves it again.
        RetainDeploymentConfig keeps the blue/green canary and its rollback alarms from the last update;
        RetainAllVariantProperties keeps the autoscaled instance count, which the old config's
        InitialInstanceCount would otherwise replace (API_UpdateEndpoint: "To use the variant properties
        specified in a new EndpointConfig call when updating an endpoint, set RetainAllVariantProperties
        to false. The default is false.").
        """
        cfg = self.cfg
        current = self.endpoint_status()
        if current.status != "InService":
            raise UserError(
                f"endpoint {cfg.endpoint_name} is {current.status}; roll back once it is InService"
            )
        serving = current.version
        if serving is None:
            raise UserError(
                f"endpoint {cfg.endpoint_name} serves config {current.serving!r}, which the deployer did "
                "not create; roll back by approving the version you want"
            )
        older = sorted(
            (row for row in self.models() if row.status == "Approved" and row.version < serving),
            key=lambda row: row.version,
            reverse=True,
        )
        if not older:
            raise NothingThere(f"no approved version older than v{serving} to roll back to")
        for row in older:
            config = f"{cfg.endpoint_name}-v{row.version}"[:63]
            if self._endpoint_config_exists(config):
                break
        else:
            versions = ", ".join(f"v{row.version}" for row in older)
            raise UserError(
                f"no approved version older than v{serving} was ever deployed ({versions}: no endpoint config "
                f"{cfg.endpoint_name}-v<version>), and the deployer never deploys a version older than the one "
                "the endpoint serves; run the pipeline again with the settings of the model you want "
                "(`mlops pipeline start`) and approve the version it registers"
            )
        self.sm.update_endpoint(
            EndpointName=cfg.endpoint_name,
            EndpointConfigName=config,
            RetainAllVariantProperties=True,
            RetainDeploymentConfig=True,
        )
        # The version left behind is rejected: an approval event for it delivered again (EventBridge
        # delivers at least once) would otherwise roll the endpoint forward to it, since it is newer
        # than the one now served. The deployer re-reads the package's status and ignores a rejected
        # one; approving it again is how an operator redeploys it.
        self.sm.update_model_package(
            ModelPackageArn=self.package_arn(serving),
            ModelApprovalStatus="Rejected",
            ApprovalDescription=f"rolled back to v{row.version} by `mlops endpoint rollback`",
        )
        return Rollback(cfg.endpoint_name, serving, row.version, config)

    def _endpoint_config_exists(self, name: str) -> bool:
        try:
            self.sm.describe_endpoint_config(EndpointConfigName=name)
        except Exception as exc:
            if not is_not_found(exc):
                raise
            return False
        return True
