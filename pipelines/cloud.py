"""What the operator CLI does in the cloud, as functions over boto3 clients (so tests hand in moto's).

Names come from the config (pipeline, model package group, endpoint), never typed twice. Every
function returns plain rows for the CLI to print, and raises ``NothingThere`` for an empty account.
"""

from __future__ import annotations

import json
import urllib.parse
import uuid
from datetime import datetime
from typing import Any

from config.schema import ProjectConfig
from pipelines.aws_errors import NothingThere, is_not_found
from training.errors import UserError

TERMINAL = ("Succeeded", "Failed", "Stopped")


def clients(cfg: ProjectConfig) -> dict[str, Any]:
    """boto3 clients for the configured region; AWS_ENDPOINT_URL (e.g. a moto server) is honoured by boto3."""
    import boto3

    session = boto3.Session(region_name=cfg.project.region)
    return {name: session.client(name) for name in ("sagemaker", "sagemaker-runtime", "s3")}


# ---- pipeline ---------------------------------------------------------------------------------------


def validate_parameters(cfg: ProjectConfig, overrides: dict[str, str]) -> list[dict[str, str]]:
    """Overrides checked before any AWS call, by the same rules as a local run (name, type, allowed
    values, s3:// URIs); every problem at once."""
    from pipelines.definition import parameter_specs
    from pipelines.local_executor import ExecutorError, coerce_parameters

    try:
        coerce_parameters({"Parameters": [spec.as_definition() for spec in parameter_specs(cfg)]}, overrides)
    except ExecutorError as exc:
        raise UserError(str(exc)) from None
    return [{"Name": name, "Value": raw} for name, raw in overrides.items()]


def start_execution(sm: Any, cfg: ProjectConfig, overrides: dict[str, str]) -> str:
    parameters = validate_parameters(cfg, overrides)
    response = sm.start_pipeline_execution(
        PipelineName=cfg.pipeline_name, PipelineParameters=parameters, ClientRequestToken=str(uuid.uuid4()),
        PipelineExecutionDescription="started with mlops pipeline start")
    return str(response["PipelineExecutionArn"])


def resolve_execution(sm: Any, cfg: ProjectConfig, execution: str | None) -> str:
    """An execution ARN from an ARN, an execution id, or None (the newest)."""
    if execution and execution.startswith("arn:"):
        return execution
    summaries = sm.list_pipeline_executions(PipelineName=cfg.pipeline_name, SortBy="CreationTime",
                                            SortOrder="Descending").get("PipelineExecutionSummaries", [])
    if execution:
        for summary in summaries:
            if summary["PipelineExecutionArn"].rsplit("/", 1)[-1] == execution:
                return str(summary["PipelineExecutionArn"])
        raise NothingThere(f"no execution {execution!r} of pipeline {cfg.pipeline_name}")
    if not summaries:
        raise NothingThere(f"pipeline {cfg.pipeline_name} has no executions yet: `mlops pipeline start`")
    return str(summaries[0]["PipelineExecutionArn"])


def _seconds(start: Any, end: Any) -> float | None:
    if not isinstance(start, datetime):
        return None
    finish = end if isinstance(end, datetime) else datetime.now(start.tzinfo)
    return round((finish - start).total_seconds(), 1)


def log_link(region: str, metadata: dict[str, Any]) -> str | None:
    """CloudWatch console link to the step's job logs, from the step metadata's job ARN."""
    for key, group in (("TrainingJob", "/aws/sagemaker/TrainingJobs"), ("ProcessingJob", "/aws/sagemaker/ProcessingJobs")):
        arn = metadata.get(key, {}).get("Arn")
        if arn:
            job = arn.rsplit("/", 1)[-1]
            quoted = urllib.parse.quote(urllib.parse.quote(group, safe=""), safe="").replace("%", "$")
            return (f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}#logsV2:log-groups/"
                    f"log-group/{quoted}/log-events$3FlogStreamNameFilter$3D{job}")
    return None


def execution_status(sm: Any, cfg: ProjectConfig, arn: str) -> dict[str, Any]:
    described = sm.describe_pipeline_execution(PipelineExecutionArn=arn)
    steps = []
    for step in sm.list_pipeline_execution_steps(PipelineExecutionArn=arn, SortOrder="Ascending").get(
            "PipelineExecutionSteps", []):
        steps.append({"name": step["StepName"], "status": step.get("StepStatus", ""),
                      "seconds": _seconds(step.get("StartTime"), step.get("EndTime")),
                      "detail": step.get("FailureReason", "") or _outcome(step.get("Metadata", {})),
                      "logs": log_link(cfg.project.region, step.get("Metadata", {}))})
    return {"execution": arn, "status": described.get("PipelineExecutionStatus", ""),
            "failure": described.get("FailureReason", ""), "steps": steps}


def _outcome(metadata: dict[str, Any]) -> str:
    if "Condition" in metadata:
        return f"outcome: {metadata['Condition'].get('Outcome')}"
    if "RegisterModel" in metadata:
        return f"registered {metadata['RegisterModel'].get('Arn', '')}"
    if "Fail" in metadata:
        return str(metadata["Fail"].get("ErrorMessage", ""))
    return ""


# ---- models -----------------------------------------------------------------------------------------


def list_models(sm: Any, cfg: ProjectConfig) -> list[dict[str, Any]]:
    group = cfg.model_package_group
    try:
        sm.describe_model_package_group(ModelPackageGroupName=group)
    except Exception as exc:
        if is_not_found(exc):
            raise NothingThere(f"no model package group {group} in {cfg.project.region}: deploy the stacks "
                               "(`cdk deploy --all`)") from None
        raise
    summaries = sm.list_model_packages(ModelPackageGroupName=group, SortBy="CreationTime",
                                       SortOrder="Descending").get("ModelPackageSummaryList", [])
    if not summaries:
        raise NothingThere(f"no model registered in {group} yet: run the pipeline (`mlops pipeline start`)")
    return [{"version": int(s.get("ModelPackageVersion") or s["ModelPackageArn"].rsplit("/", 1)[-1]),
             "status": s.get("ModelApprovalStatus", ""), "created": str(s.get("CreationTime", ""))[:19],
             "arn": s["ModelPackageArn"]} for s in summaries]


def package_arn(sm: Any, cfg: ProjectConfig, version: int) -> str:
    for row in list_models(sm, cfg):
        if row["version"] == version:
            return str(row["arn"])
    raise NothingThere(f"{cfg.model_package_group} has no version {version}: see `mlops models list`")


def show_model(sm: Any, s3: Any, cfg: ProjectConfig, version: int) -> dict[str, Any]:
    package = sm.describe_model_package(ModelPackageName=package_arn(sm, cfg, version))
    container = package["InferenceSpecification"]["Containers"][0]
    metrics: dict[str, Any] = {}
    uri = package.get("ModelMetrics", {}).get("ModelQuality", {}).get("Statistics", {}).get("S3Uri", "")
    if uri.startswith("s3://"):
        bucket, _, key = uri[5:].partition("/")
        try:
            body = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
            metrics = {k: v.get("value") for k, v in body.get("metrics", {}).items() if isinstance(v, dict)}
        except Exception as exc:  # the package stays showable without its statistics
            metrics = {"(unavailable)": f"{uri}: {exc}"}
    return {"version": version, "status": package.get("ModelApprovalStatus"), "arn": package["ModelPackageArn"],
            "metrics": metrics, "metadata": package.get("CustomerMetadataProperties", {}),
            "serving": container.get("Environment", {}), "artifact": container.get("ModelDataUrl"),
            "image": container.get("Image"),
            "instance_types": package["InferenceSpecification"].get("SupportedRealtimeInferenceInstanceTypes", [])}


def set_approval(sm: Any, cfg: ProjectConfig, version: int, status: str, reason: str | None) -> str:
    arn = package_arn(sm, cfg, version)
    kwargs = {"ModelPackageArn": arn, "ModelApprovalStatus": status}
    if reason:
        kwargs["ApprovalDescription"] = reason
    sm.update_model_package(**kwargs)
    return arn


# ---- endpoint ---------------------------------------------------------------------------------------


def endpoint_status(sm: Any, cfg: ProjectConfig) -> dict[str, Any]:
    name = cfg.endpoint_name
    try:
        endpoint = sm.describe_endpoint(EndpointName=name)
    except Exception as exc:
        if is_not_found(exc):
            raise NothingThere(f"no endpoint {name} in {cfg.project.region}: approve a model "
                               "(`mlops models approve VERSION`) and the deployer creates it") from None
        raise
    variants = [{"variant": v.get("VariantName"), "instances": v.get("CurrentInstanceCount"),
                 "desired": v.get("DesiredInstanceCount")} for v in endpoint.get("ProductionVariants", [])]
    config = endpoint.get("EndpointConfigName", "")
    return {"endpoint": name, "status": endpoint.get("EndpointStatus"), "config": config,
            "version": _config_version(cfg, config), "variants": variants,
            "failure": endpoint.get("FailureReason", "")}


def _config_version(cfg: ProjectConfig, config: str) -> int | None:
    prefix = f"{cfg.endpoint_name}-v"
    return int(config[len(prefix):]) if config.startswith(prefix) and config[len(prefix):].isdigit() else None


def invoke(runtime: Any, endpoint: str, prompt: str, max_tokens: int) -> str:
    body = {"messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens, "temperature": 0}
    response = runtime.invoke_endpoint(EndpointName=endpoint, ContentType="application/json",
                                       Accept="application/json", Body=json.dumps(body).encode())
    raw = response["Body"].read()
    try:
        return str(json.loads(raw)["choices"][0]["message"]["content"])
    except (ValueError, KeyError, IndexError, TypeError):
        raise UserError(f"endpoint {endpoint} answered something that is not an OpenAI chat completion: "
                        f"{raw[:300]!r}") from None


def rollback(sm: Any, cfg: ProjectConfig) -> dict[str, Any]:
    """Point the endpoint at the newest approved version older than the one it serves.

    RetainDeploymentConfig keeps the blue/green canary and its rollback alarms from the last update.
    """
    current = endpoint_status(sm, cfg)
    if current["status"] != "InService":
        raise UserError(f"endpoint {cfg.endpoint_name} is {current['status']}; roll back once it is InService")
    serving = current["version"]
    if serving is None:
        raise UserError(f"endpoint {cfg.endpoint_name} serves config {current['config']!r}, which the deployer did "
                        "not create; roll back by approving the version you want")
    older = [row for row in list_models(sm, cfg) if row["status"] == "Approved" and row["version"] < serving]
    if not older:
        raise NothingThere(f"no approved version older than v{serving} to roll back to")
    target = max(older, key=lambda row: row["version"])
    config = f"{cfg.endpoint_name}-v{target['version']}"[:63]
    try:
        sm.describe_endpoint_config(EndpointConfigName=config)
    except Exception as exc:
        if not is_not_found(exc):
            raise
        raise UserError(f"v{target['version']} was never deployed (no endpoint config {config}); approve it again "
                        "to let the deployer build it") from None
    sm.update_endpoint(EndpointName=cfg.endpoint_name, EndpointConfigName=config, RetainDeploymentConfig=True)
    return {"endpoint": cfg.endpoint_name, "from": serving, "to": target["version"], "config": config}
