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
not look like a definition is a miss; the 64 newest entries are kept. ``MLOPS_DEFINITION_CACHE`` names
another folder, or turns the cache ``off``; deleting the folder is always safe. What it does not see: an
SDK edited in place without a version change. Credentials (``AWS_ACCESS_KEY_ID`` and the like) are left
out of the key: they never change the bytes.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import sys
import time
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
ON = ("", "on", "1", "true", "yes")
OFF = ("off", "0", "false", "no")
# Credentials change on every refresh (SSO, aws-vault, OIDC) and never change the bytes (the CLI test
# builds the golden file with none): keyed, they would make every refresh a miss and a new entry.
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_CREDENTIAL_EXPIRATION",
}
# Entries kept: the newest by use; older ones are removed when one is written.
KEEP = 64
# Bumped when the entry format or the key's recipe changes.
FORMAT = "2"
log = logging.getLogger(__name__)


def cache_dir() -> Path:
    chosen = os.environ.get(SWITCH, "").strip()
    if chosen.lower() not in ON:
        return Path(chosen).expanduser().resolve()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "llm-neuron-mlops" / "definitions"


def enabled() -> bool:
    return os.environ.get(SWITCH, "").strip().lower() not in OFF


@functools.cache
def sources_digest() -> str:
    """Once per process: the code this process runs is the code it loaded, whatever is edited on disk
    afterwards (a notebook kernel that imported the builder keeps building with the old one)."""
    return sources_digest_now()


def sources_digest_now() -> str:
    """The digest of the sources as they are on disk now: what a process started now would load."""
    digest = hashlib.sha256()
    for package in SOURCES:
        root = REPO / package
        files = sorted(
            p
            for p in root.rglob("*")
            if p.suffix in (".py", ".yaml")
            and "__pycache__" not in p.parts
            and not p.name.startswith(".")  # editor lock files (.#builder.py) are dangling links
            and not p.is_symlink()
            and p.is_file()
        )
        for path in files:
            digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


@functools.cache
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
    environment = {
        k: v for k, v in sorted(seen.items()) if k.startswith(("AWS_", "SAGEMAKER_")) and k not in CREDENTIALS
    }
    material = {
        "format": FORMAT,
        "config": json.loads(cfg.model_dump_json()),
        # Which values were set, not only what they are: an unset training.warmup_steps is left out
        # of the job's hyperparameters (training/hyperparameters.py to_sagemaker_strings).
        "set": json.loads(cfg.model_dump_json(exclude_unset=True)),
        "sources": sources_digest(),
        "versions": _versions(),
        "environment": environment,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def _is_definition(text: str) -> bool:
    """A torn, empty or foreign file is a miss, never a definition."""
    try:
        parsed = json.loads(text)
    except ValueError:
        return False
    return isinstance(parsed, dict) and "Version" in parsed and isinstance(parsed.get("Steps"), list)


def cached_definition(cfg: ProjectConfig, build: Callable[[ProjectConfig], str]) -> str:
    """The definition for ``cfg``: from the cache when its key is there, else ``build(cfg)``, stored.
    The cache can only save time: any failure to find, read or write it means a build and a warning."""
    if not enabled():
        return build(cfg)
    try:
        path = cache_dir() / f"{definition_key(cfg)}.json"
    except (OSError, RuntimeError) as exc:  # an unreadable source file, no home folder
        log.warning(
            "the pipeline definition cache is unusable (%s); building it. Set %s=off to stop trying.",
            exc,
            SWITCH,
        )
        return build(cfg)
    try:
        text = path.read_text(encoding="utf-8")
        if _is_definition(text):
            with contextlib.suppress(OSError):  # a read-only cache still answers
                os.utime(path)  # the newest by use are kept
            return text
    except (OSError, ValueError):
        pass
    text = build(cfg)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_text_atomic(path, text)
        _prune(path.parent)
    except OSError as exc:  # a read-only or full cache folder costs the next call a rebuild, nothing more
        log.warning(
            "could not keep the pipeline definition in %s (%s); the next call builds it again. "
            "Set %s=off to stop trying.",
            path.parent,
            exc.strerror or exc,
            SWITCH,
        )
    return text


def _prune(folder: Path) -> None:
    """Keep the KEEP newest entries, and remove temporary files a killed writer left over a day ago."""
    entries = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[KEEP:]:
        old.unlink(missing_ok=True)
    for stale in folder.glob(".tmp-*"):
        if time.time() - stale.stat().st_mtime > 86400:
            stale.unlink(missing_ok=True)
