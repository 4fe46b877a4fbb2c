"""What the pipeline component is given, read from the config once in app.py."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PipelineSettings:
    pipeline_name: str
    model_package_group: str
    definition_json: str  # from pipelines.definition.builder.pipeline_definition, placeholders included
    subnet_count: int
    source_commit: str
    schedule: str | None
