"""What the operator commands need from a platform, and the rows they get back.

Two twins implement :class:`Platform`: :class:`~pipelines.operate.cloud.CloudPlatform` (SageMaker through
boto3) and :class:`~pipelines.operate.local.LocalPlatform` (what ``mlops run --local`` left under
``.mlops/``). Both return these dataclasses, so mypy checks that they agree, and ``mlops ... --local``
is one call to ``pipelines.cli.options.platform``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from training.errors import UserError

# Pipeline execution statuses after which nothing changes (DescribePipelineExecution's
# PipelineExecutionStatus; Stopping ends in Stopped).
FINISHED_STATUSES = ("Succeeded", "Failed", "Stopped", "Stopping")


@dataclass(frozen=True)
class StepRow:
    name: str
    status: str
    seconds: float | None
    detail: str  # the failure reason, or the outcome (gate, registration, fail message)
    logs: str | None  # where the step's log is: a CloudWatch console link or a local file


@dataclass(frozen=True)
class ExecutionStatus:
    execution: str
    status: str
    failure: str
    steps: list[StepRow]

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_STATUSES


@dataclass(frozen=True)
class ModelRow:
    version: int
    status: str
    created: str
    arn: str


@dataclass(frozen=True)
class ModelDetails:
    version: int
    status: str
    arn: str
    metrics: dict[str, Any]
    metadata: dict[str, Any]
    serving: dict[str, Any]  # the serving container's environment
    artifact: str
    image: str
    instance_types: list[str]


Decision = Literal["Approved", "Rejected"]


@dataclass(frozen=True)
class Approval:
    arn: str
    status: Decision
    next_step: str = ""  # what follows on this platform, if anything (the cloud deployer rolls it out)


@dataclass(frozen=True)
class EndpointStatus:
    name: str
    status: str
    version: int | None
    serving: str  # the endpoint config (cloud) or the model package group (local) it serves
    instances: str
    failure: str = ""
    extras: dict[str, str] = field(default_factory=dict)  # e.g. the local server's log

    def line(self) -> str:
        shown = "" if self.version is None else f"v{self.version} "
        parts = [self.name, self.status, f"serving {shown}({self.serving})", f"instances {self.instances}"]
        parts += [f"{key} {value}" for key, value in self.extras.items()]
        if self.failure:
            parts.append(f"failure: {self.failure}")
        return "  ".join(parts)


@dataclass(frozen=True)
class Rollback:
    endpoint: str
    from_version: int
    to_version: int
    endpoint_config: str


def completion_text(reply: Any, endpoint: str, raw: bytes | str | None = None) -> str:
    """The text of an OpenAI chat completion (``reply``, already parsed), or a UserError that shows what
    the endpoint sent (``raw``, or ``reply`` as JSON)."""
    try:
        return str(reply["choices"][0]["message"]["content"])
    except (KeyError, IndexError, TypeError):
        sent = raw if raw is not None else json.dumps(reply, default=str)
        raise UserError(
            f"endpoint {endpoint} answered something that is not an OpenAI chat completion: {sent[:300]!r}"
        ) from None


class Platform(Protocol):
    """The operator's view of one platform; each method raises NothingThere for an empty platform."""

    #: whether an execution can still change after the status was read (the cloud runs it elsewhere;
    #: a local run has finished when its report exists)
    refreshes: bool

    def execution_status(self, execution: str | None) -> ExecutionStatus: ...

    def models(self) -> list[ModelRow]: ...

    def model(self, version: int) -> ModelDetails: ...

    def set_approval(self, version: int, status: Decision, reason: str | None) -> Approval: ...

    def endpoint_status(self) -> EndpointStatus: ...

    def invoke(self, prompt: str, max_tokens: int) -> str: ...
