"""``mlops run --local``: the generated pipeline definition, executed on this machine, then served.

1. Generate the definition (the same bytes ``mlops pipeline definition`` prints) and fill its
   placeholders with local values (``pipelines/local/store.py``).
2. Put the configured data and the local base model into the local S3 store under content-addressed
   prefixes, and point the data and model parameters at them: SageMaker's cache keys on URIs, not
   contents, so a changed file must get a new URI to run the steps again.
3. Set the two parameters by which a laptop differs from the cloud: ``TrainBackend`` (the config's
   ``training.backend``, ``auto`` by default) and ``CompileTarget=cpu``. Instance types are recorded
   but mean nothing here.
4. Run the executor; on success with a registered model, serve it on a loopback port and send a
   smoke request through the OpenAI-style contract.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config.schema import ProjectConfig
from pipelines.definition.parameters import coerce_parameters, enforce_plan_with_parameters
from pipelines.local.executor import (
    Executor,
    disk_full_message,
    new_execution_id,
    read_saved_state,
)
from pipelines.local.lock import store_lock
from pipelines.local.store import (
    REPO_ROOT,
    LocalStore,
    local_placeholder_values,
    private_store,
    run_folder,
    sweep_partials,
)
from training.errors import UserError
from training.files import DISK_FULL, write_json_atomic


@dataclass
class LocalResult:
    report: dict[str, Any]
    report_path: Path
    endpoint: dict[str, Any] | None
    smoke: dict[str, Any] | None


def seed_store(cfg: ProjectConfig, store: LocalStore, bucket: str) -> dict[str, str]:
    """The configured data and base model in the local S3 store; returns the parameter values for them."""
    from pipelines.local.base_model import local_base_model
    from training.fingerprints import folder_sha256

    values = {}
    for name, source in (("TrainDataS3Uri", cfg.data.train), ("ValidationDataS3Uri", cfg.data.validation)):
        if source is None:
            raise UserError(
                f"data.{'train' if name.startswith('Train') else 'validation'} is not set; the pipeline "
                "needs both (Evaluate scores the held-out set)"
            )
        path = Path(source)
        if not path.exists():
            raise UserError(
                f"data.{'train' if name.startswith('Train') else 'validation'}={source!r}: no such file or folder"
            )
        channel = "train" if name.startswith("Train") else "validation"
        uri = f"s3://{bucket}/datasets/{folder_sha256(path)[:16]}/{channel}/"
        if not store.exists(uri):
            store.publish(path, uri)
        values[name] = uri
    model = local_base_model(cfg, store.root)
    uri = f"s3://{bucket}/base-models/{model.name}-{folder_sha256(model)[:16]}/"
    if not store.exists(uri):
        store.publish(model, uri)
    values["BaseModelS3Uri"] = uri
    return values


def local_definition(cfg: ProjectConfig) -> tuple[dict[str, Any], dict[str, str], str]:
    """The definition with local values, those values, and the key ``--resume`` checks: the definition
    without the git commit, so committing work does not make an execution unresumable."""
    import hashlib

    from pipelines.definition.builder import pipeline_definition
    from pipelines.definition.placeholders import MLFLOW_TRACKING, substitute
    from pipelines.local.registry import tracking_uri

    values = local_placeholder_values(cfg.pipeline.subnet_count, REPO_ROOT)
    # The cloud fine-tune tracks to the managed MLflow server; the local one to the local MLflow, or nowhere.
    values[MLFLOW_TRACKING] = (
        tracking_uri(Path(cfg.local.store_dir).resolve()) if cfg.local.mlflow == "sqlite" else ""
    )
    text = pipeline_definition(cfg)
    key = hashlib.sha256(substitute(text, {**values, "SourceCommit": "-"}).encode()).hexdigest()
    return json.loads(substitute(text, values)), values, key


def run_local(
    cfg: ProjectConfig,
    overrides: dict[str, str],
    resume: str | None = None,
    docker: bool = False,
    serve: bool = True,
    port: int | None = None,
    view: Any = None,
    invocation: dict[str, Any] | None = None,
) -> LocalResult:
    """The whole pipeline on this machine: check the request, generate the definition, run it, serve.

    It holds the store's lock throughout (``lock.py``); ``invocation`` ({"config": [...], "set": [...]})
    is saved with the state so that a refused ``--resume`` can name the flags that differ."""
    if docker:
        _check_docker()
    store_root = private_store(Path(cfg.local.store_dir).resolve())
    execution_id = resume or new_execution_id()
    command = "mlops run --local" + (f" --resume {resume}" if resume else "")
    try:
        with store_lock(store_root, command, execution_id):
            return _run_locked(
                cfg, store_root, execution_id, overrides, resume, docker, serve, port, view, invocation
            )
    except OSError as exc:  # a full disk outside a step (seeding the store, the lock, the endpoint)
        if exc.errno not in DISK_FULL:
            raise
        then = "run again: finished steps come from the cache"
        raise UserError(disk_full_message(exc, store_root, then)) from None


def _run_locked(
    cfg: ProjectConfig,
    store_root: Path,
    execution_id: str,
    overrides: dict[str, str],
    resume: str | None,
    docker: bool,
    serve: bool,
    port: int | None,
    view: Any,
    invocation: dict[str, Any] | None,
) -> LocalResult:
    store = LocalStore(store_root)
    sweep_partials(store_root)  # leftovers of an interrupted earlier run; we hold the lock
    saved = _resumable(store_root, resume, overrides) if resume else None  # before the slow definition
    definition, values, definition_key = local_definition(cfg)
    if saved is not None:
        parameters = saved
    else:
        seeded = seed_store(cfg, store, values["DataBucket"])
        local = {"TrainBackend": cfg.training.backend, "CompileTarget": "cpu", **seeded}
        parameters = coerce_parameters(definition, {**{k: str(v) for k, v in local.items()}, **overrides})
        enforce_plan_with_parameters(cfg, parameters, overrides)
    executor = Executor(
        definition,
        store_root,
        cfg.pipeline_name,
        parameters,
        execution_id,
        docker=docker,
        job_env=_job_env(cfg, store_root),
        on_change=getattr(view, "on_change", None),
        on_line=getattr(view, "on_line", None),
        on_note=getattr(view, "on_note", None),
        definition_sha256=definition_key,
        invocation=invocation,
    )
    report = executor.run(resume=bool(resume))
    report_path = executor.run_dir / "report.json"
    endpoint = smoke = None
    registered = report.get("registered")
    if serve and registered:
        endpoint, smoke = _serve(cfg, store, registered, port)
        report["endpoint"] = {**endpoint, "smoke_reply": smoke["choices"][0]["message"]["content"]}
        write_json_atomic(report_path, report)
    return LocalResult(report, report_path, endpoint, smoke)


def _check_docker() -> None:
    from pipelines.local.jobs import docker_engine

    reason = docker_engine()
    if reason:
        raise UserError(
            f"--docker: {reason}. Run without --docker to run each step's entrypoint as a local "
            "process (the same code the images run)"
        )


def _resumable(store_root: Path, resume: str, overrides: dict[str, str]) -> dict[str, Any]:
    """The saved parameters of the execution ``--resume`` names, or a UserError that says why not."""
    state_file = run_folder(store_root, resume, "--resume") / "state.json"
    if not state_file.is_file():
        raise UserError(f"--resume {resume}: no such local execution (no {state_file})")
    if overrides:
        raise UserError("--resume continues an execution with its own parameters; drop --param")
    return dict(read_saved_state(state_file, resume)["parameters"])


def _job_env(cfg: ProjectConfig, store_root: Path) -> dict[str, dict[str, str]]:
    """What each job type gets on top of its step's Environment: plain log lines, and the local MLflow."""
    job_env = {"Processing": {"MLOPS_PROGRESS": "0"}, "Training": {"MLOPS_PROGRESS": "0"}}
    if cfg.local.mlflow == "sqlite":
        from pipelines.local.registry import tracking_uri

        job_env["Training"].update(
            MLFLOW_TRACKING_URI=tracking_uri(store_root), MLFLOW_EXPERIMENT_NAME=cfg.pipeline_name
        )
    return job_env


def _serve(
    cfg: ProjectConfig, store: LocalStore, registered: dict[str, Any], port: int | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Serve the registered model.tar.gz and send one smoke request; a failed smoke test leaves nothing running."""
    from pipelines.local import endpoint as local_endpoint

    archive = store.path(registered["ModelDataUrl"])
    name, version = registered["ModelPackageGroupName"], registered["ModelPackageVersion"]
    endpoint = local_endpoint.start(store.root, archive, name, version, port)
    try:
        smoke = local_endpoint.invoke(endpoint["url"], smoke_messages(cfg), max_tokens=32)
    except Exception:
        local_endpoint.stop(store.root)
        if not endpoint.get("reused"):
            raise
        # A kept server that answered /ping but not the smoke request: a fresh one, as without reuse.
        endpoint = local_endpoint.start(store.root, archive, name, version, port, reuse=False)
        try:
            smoke = local_endpoint.invoke(endpoint["url"], smoke_messages(cfg), max_tokens=32)
        except BaseException:
            local_endpoint.stop(store.root)
            raise
    except BaseException:
        local_endpoint.stop(store.root)
        raise
    return endpoint, smoke


def smoke_messages(cfg: ProjectConfig) -> list[dict[str, str]]:
    """The first held-out example's conversation up to the answer: a realistic request."""
    from training.data import load_examples

    examples = load_examples(
        Path(cfg.data.validation or cfg.data.train),
        channel="validation",
        max_seq_length=cfg.training.max_seq_length,
    ).examples
    first = examples[0]
    if first.get("messages"):
        messages = [m for m in first["messages"]]
        while messages and messages[-1]["role"] == "assistant":
            messages.pop()
        return [{"role": m["role"], "content": m["content"]} for m in messages]
    return [{"role": "user", "content": first["prompt"]}]
