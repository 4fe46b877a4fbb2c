"""A cache of generated pipeline definitions, keyed by everything that decides their bytes.

Building a definition means importing the SageMaker SDK (thousands of modules: pydantic shapes for the
whole SageMaker API, pandas, docker) and running it, about 9 s on our 2-core machine, while the result
is a pure function of its inputs: the project config, our code, the SDK's code and the few environment
variables the SDK reads. So `mlops pipeline definition`, `cdk synth` (app.py) and `mlops run --local`
keep each definition under a key made of:

* the config, as its canonical JSON;
* the bytes of every source file the builder could reach: the ``config``, ``containers``, ``training``,
  ``inference`` and ``pipelines/definition`` packages (``*.py`` and ``*.yaml``), found next to this file;
* the version of every installed distribution the SDK path imports (sagemaker*, boto3, botocore,
  pydantic, jsonschema) and the Python version;
* the ``AWS_*`` and ``SAGEMAKER_*`` environment variables.

A change to any of them is a miss and a fresh build. Entries are written atomically, one file per key
under ``$XDG_CACHE_HOME/llm-neuron-mlops/definitions`` (``~/.cache`` by default), and a file that does
not parse is a miss. ``MLOPS_DEFINITION_CACHE`` names another folder, or turns the cache ``off``;
deleting the folder is always safe. What it does not see: an SDK edited in place without a version change.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from config.schema import ProjectConfig
from pipelines.definition.sdk import offline_environment
from training.files import write_text_atomic

REPO = Path(__file__).resolve().parents[2]
# Our packages the builder imports from, directly or through config.plan.
SOURCES = ("config", "containers", "training", "inference", "pipelines/definition")
DISTRIBUTIONS = (
    "sagemaker",
    "sagemaker-core",
    "sagemaker-mlops",
    "sagemaker-train",
    "sagemaker-serve",
    "boto3",
    "botocore",
    "pydantic",
    "jsonschema",
)
SWITCH = "MLOPS_DEFINITION_CACHE"
# Bumped when the entry format or the key's recipe changes.
FORMAT = "1"


def cache_dir() -> Path:
    chosen = os.environ.get(SWITCH, "").strip()
    if chosen:
        return Path(chosen).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "llm-neuron-mlops" / "definitions"


def enabled() -> bool:
    return os.environ.get(SWITCH, "").strip().lower() not in ("off", "0", "false", "no")


def _sources_digest() -> str:
    digest = hashlib.sha256()
    for package in SOURCES:
        root = REPO / package
        files = sorted(
            p for p in root.rglob("*") if p.suffix in (".py", ".yaml") and "__pycache__" not in p.parts
        )
        for path in files:
            digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _versions() -> dict[str, str]:
    versions = {"python": sys.version}
    for name in DISTRIBUTIONS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def definition_key(cfg: ProjectConfig) -> str:
    # The environment the build will see: ours plus what offline_session sets, so a call before and
    # a call after a build in one process agree.
    seen = offline_environment(cfg.project.region, os.environ)
    environment = {k: v for k, v in sorted(seen.items()) if k.startswith(("AWS_", "SAGEMAKER_"))}
    material = {
        "format": FORMAT,
        "config": json.loads(cfg.model_dump_json()),
        "sources": _sources_digest(),
        "versions": _versions(),
        "environment": environment,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def cached_definition(cfg: ProjectConfig, build: Callable[[ProjectConfig], str]) -> str:
    """The definition for ``cfg``: from the cache when its key is there, else ``build(cfg)``, stored."""
    if not enabled():
        return build(cfg)
    path = cache_dir() / f"{definition_key(cfg)}.json"
    try:
        text = path.read_text(encoding="utf-8")
        json.loads(text)  # a torn or foreign file is a miss, never a definition
        return text
    except (OSError, ValueError):
        pass
    text = build(cfg)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, text)
    except OSError as exc:  # a read-only or full cache folder costs the next call a rebuild, nothing more
        logging.getLogger(__name__).warning(
            "could not keep the pipeline definition in %s (%s); the next call builds it again. "
            "Set %s=off to stop trying.",
            path.parent,
            exc.strerror or exc,
            SWITCH,
        )
    return text
