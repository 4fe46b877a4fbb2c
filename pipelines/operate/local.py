"""The local twin of the operator commands: what ``mlops run --local`` left under the local store
(run reports, the local MLflow registry, the local endpoint), as the rows of ``platform``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from config.schema import ProjectConfig
from pipelines.local import endpoint as local_endpoint
from pipelines.local import registry
from pipelines.operate.aws_errors import NothingThere
from pipelines.operate.platform import (
    Approval,
    Decision,
    EndpointStatus,
    ExecutionStatus,
    ModelDetails,
    ModelRow,
    StepRow,
    completion_text,
)


def _number(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        return text


class LocalPlatform:
    refreshes = False  # a local run has finished by the time its report exists

    def __init__(self, cfg: ProjectConfig) -> None:
        self.store = Path(cfg.local.store_dir).resolve()
        self.group = cfg.model_package_group

    def execution_status(self, execution: str | None) -> ExecutionStatus:
        runs = self.store / "runs"
        reports = sorted(runs.glob("*/report.json"), key=lambda p: p.stat().st_mtime) if runs.exists() else []
        if execution:
            reports = [p for p in reports if p.parent.name == execution]
        if not reports:
            raise NothingThere(
                "no local pipeline run" + (f" {execution}" if execution else "") + ": `mlops run --local`"
            )
        report = json.loads(reports[-1].read_text())
        steps = [
            StepRow(
                name=s["name"], status=s["status"], seconds=s["seconds"], detail=s["message"], logs=s["log"]
            )
            for s in report["steps"]
        ]
        return ExecutionStatus(
            execution=report["execution_id"], status=report["status"], failure="", steps=steps
        )

    def models(self) -> list[ModelRow]:
        versions = registry.model_versions(self.store, self.group)
        if not versions:
            raise NothingThere(
                f"no model registered in the local registry's {self.group} yet: run `mlops run --local`"
            )
        return [
            ModelRow(
                version=v["version"],
                status=v["tags"].get(registry.APPROVAL_TAG, ""),
                created="",
                arn=registry.package_arn(self.group, v["version"]),
            )
            for v in versions
        ]

    def model(self, version: int) -> ModelDetails:
        for v in registry.model_versions(self.store, self.group):
            if v["version"] != version:
                continue
            tags = v["tags"]
            return ModelDetails(
                version=version,
                status=tags.get(registry.APPROVAL_TAG, ""),
                arn=registry.package_arn(self.group, version),
                metrics={
                    k[len("metric.") :]: _number(val) for k, val in tags.items() if k.startswith("metric.")
                },
                metadata={k[len("meta.") :]: val for k, val in tags.items() if k.startswith("meta.")},
                serving=json.loads(tags.get("environment", "{}")),
                artifact=tags.get("model_data_url", ""),
                image=tags.get("image", ""),
                instance_types=[t for t in tags.get("inference_instances", "").split(",") if t],
            )
        raise NothingThere(
            f"the local registry's {self.group} has no version {version}: see `mlops models list --local`"
        )

    def set_approval(self, version: int, status: Decision, reason: str | None) -> Approval:
        self.model(version)  # exists, or NothingThere
        registry.set_approval_tags(self.store, self.group, version, status, reason)
        return Approval(arn=registry.package_arn(self.group, version), status=status)

    def _running_endpoint(self) -> dict[str, Any]:
        state = local_endpoint.read_state(self.store)
        if state is None:
            raise NothingThere("no local endpoint is running (start one with `mlops run --local`)")
        return state

    def endpoint_status(self) -> EndpointStatus:
        state = self._running_endpoint()
        return EndpointStatus(
            name=state["url"],
            status="InService",
            version=state["version"],
            serving=state["model"],
            instances=f"1 (pid {state['pid']})",
            extras={"log": state["log"]},
        )

    def invoke(self, prompt: str, max_tokens: int) -> str:
        url = self._running_endpoint()["url"]
        reply = local_endpoint.invoke(url, [{"role": "user", "content": prompt}], max_tokens)
        return completion_text(reply, url)
