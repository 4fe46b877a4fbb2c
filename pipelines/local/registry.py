"""The RegisterModel step on this machine: a model version in the local MLflow registry (SQLite).

It records what the cloud model package holds: the group (registered model), the artifact
(``ModelDataUrl``), the container image and its ``SM_ON_*`` environment, the supported instance
types, the model-quality statistics (``evaluation.json``), the approval status and the customer
metadata (git commit, data hash, MLflow run id, library versions), each as a tag, so that
``mlops models`` can show the same fields locally and in the cloud.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipelines.local.store import LOCAL_ACCOUNT, LocalStore

APPROVAL_TAG = "approval_status"


def tracking_uri(store_root: Path) -> str:
    return f"sqlite:///{(store_root / 'mlflow.db').resolve()}"


def _client(store_root: Path) -> Any:
    import logging

    from mlflow.tracking import MlflowClient

    # MLflow's database migrations log at INFO on first use; the step's own line is enough.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    uri = tracking_uri(store_root)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def register_model_version(args: dict[str, Any], store: LocalStore, store_root: Path) -> dict[str, Any]:
    """Create the version; returns the DescribeModelPackage-like properties later steps could read."""
    from mlflow.exceptions import MlflowException

    client = _client(store_root)
    group = args["ModelPackageGroupName"]
    container = args["InferenceSpecification"]["Containers"][0]
    artifact = store.path(container["ModelDataUrl"])
    if not artifact.is_file():
        raise FileNotFoundError(
            f"ModelDataUrl {container['ModelDataUrl']} has no object (local store: {artifact})"
        )
    try:
        client.get_registered_model(group)
    except MlflowException:
        client.create_registered_model(group, description=f"Model package group {group} (local registry)")
    tags = {
        APPROVAL_TAG: str(args.get("ModelApprovalStatus", "PendingManualApproval")),
        "model_data_url": container["ModelDataUrl"],
        "image": container["Image"],
        "environment": json.dumps(container.get("Environment", {}), sort_keys=True),
        "inference_instances": ",".join(
            args["InferenceSpecification"].get("SupportedRealtimeInferenceInstanceTypes", [])
        ),
        "content_types": ",".join(args["InferenceSpecification"].get("SupportedContentTypes", [])),
    }
    statistics = args.get("ModelMetrics", {}).get("ModelQuality", {}).get("Statistics", {})
    if statistics.get("S3Uri"):
        tags["model_quality_statistics"] = statistics["S3Uri"]
        path = store.path(statistics["S3Uri"])
        if path.is_file():
            metrics = json.loads(path.read_text()).get("metrics", {})
            for name, value in metrics.items():
                if isinstance(value, dict) and "value" in value:
                    tags[f"metric.{name}"] = str(value["value"])
    for key, value in args.get("CustomerMetadataProperties", {}).items():
        tags[f"meta.{key}"] = str(value)
    run_id = args.get("CustomerMetadataProperties", {}).get("mlflow_run_id")
    if run_id in (None, "", "none"):
        run_id = None
    else:
        try:
            client.get_run(run_id)
        except MlflowException:
            run_id = None  # tracked elsewhere; the tag keeps the id
    version = client.create_model_version(
        group, source=str(artifact), run_id=run_id, tags=tags, description=args.get("ModelPackageDescription")
    )
    arn = package_arn(group, int(version.version))
    return {
        "ModelPackageArn": arn,
        "ModelPackageGroupName": group,
        "ModelPackageVersion": int(version.version),
        "ModelApprovalStatus": tags[APPROVAL_TAG],
        "ModelDataUrl": container["ModelDataUrl"],
    }


def model_versions(store_root: Path, group: str) -> list[dict[str, Any]]:
    """The group's versions, newest first, with their tags."""
    from mlflow.exceptions import MlflowException

    client = _client(store_root)
    try:
        versions = client.search_model_versions(f"name='{group}'")
    except MlflowException:
        return []
    out = [
        {"version": int(v.version), "source": v.source, "tags": dict(v.tags), "run_id": v.run_id}
        for v in versions
    ]
    return sorted(out, key=lambda v: -v["version"])


def package_arn(group: str, version: int) -> str:
    """The ARN a local model version stands for (the shape of SageMaker's model package ARNs)."""
    return f"arn:aws:sagemaker:local:{LOCAL_ACCOUNT}:model-package/{group}/{version}"


def set_approval_tags(store_root: Path, group: str, version: int, status: str, reason: str | None) -> None:
    client = _client(store_root)
    client.set_model_version_tag(group, str(version), APPROVAL_TAG, status)
    if reason:
        client.set_model_version_tag(group, str(version), "approval_description", reason)
