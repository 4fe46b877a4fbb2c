"""Run a SageMaker Pipeline definition on this machine: the very JSON that goes to the cloud.

The executor walks the steps in dependency order (data references, ``DependsOn``, condition
branches), resolves each step's arguments (parameters, execution variables, step properties,
``Join``, ``JsonGet`` on property files), and runs it:

* ``Processing`` / ``Training``: the step's container command as a local job (``pipelines/local/jobs.py``)
  under ``<store>/runs/<execution-id>/<step>/``, with S3 mapped to ``<store>/s3/``;
* ``Condition``: evaluated; the branch not taken is skipped;
* ``Fail``: ends the execution with the step's (resolved) message;
* ``RegisterModel``: a model version in the local MLflow registry (``pipelines/local/registry.py``).

Any other step type is refused before anything runs, naming the step and its type.

Caching follows SageMaker's CacheConfig: the key is the step type plus the request fields SageMaker
keys on (processing: AppSpecification, Environment, ProcessingInputs; training: AlgorithmSpecification,
CheckpointConfig, DebugHookConfig, DebugRuleConfigurations, Environment, HyperParameters,
InputDataConfig), after resolution; a hit within ExpireAfter whose outputs still exist reuses them.
State is saved after every step (atomically), so ``--resume <execution-id>`` continues from the first
unfinished one. A cache entry records the size and modification time of every output file, and a hit
whose outputs no longer match (a truncated archive, an edited file) runs the step again; an unreadable
cache entry is a miss. Retry policies are not applied locally (there is no capacity to wait for); a failed step fails the run
and keeps its log and partial outputs in place.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import re
import secrets
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipelines.definition.service_rules import ServiceRuleError, check_request
from pipelines.local.expressions import (
    Context,
    ExpressionError,
    evaluate_condition,
    resolve,
    step_references,
    to_text,
)
from pipelines.local.jobs import (
    JobFailed,
    JobSetupError,
    pack_model,
    processing_job,
    processing_properties,
    run_job,
    training_job,
    training_properties,
)
from pipelines.local.processes import is_running
from pipelines.local.store import LOCAL_ACCOUNT, LocalStore
from training.errors import UserError
from training.files import DISK_FULL, UnreadableFile, read_json_object, write_json_atomic

SUPPORTED_TYPES = ("Processing", "Training", "Condition", "Fail", "RegisterModel")
CACHE_FIELDS = {
    "Processing": ("AppSpecification", "Environment", "ProcessingInputs"),
    "Training": (
        "AlgorithmSpecification",
        "CheckpointConfig",
        "DebugHookConfig",
        "DebugRuleConfigurations",
        "Environment",
        "HyperParameters",
        "InputDataConfig",
    ),
}
FINISHED = ("done", "cached")
STATE_FILE = "state.json"
JOB_MARKER = b"containers.entrypoint"
# Disk kept free for the run's own bookkeeping: when a step fills the disk, this file is deleted so the
# failed step's state, its traceback and report.json can still be written (ENOSPC would stop them too).
RESERVE_FILE = ".disk-reserve"
RESERVE_BYTES = 4 << 20


class ExecutorError(UserError):
    """The definition or the request cannot be run here (before or between steps); says what and where."""


class ExecutionFailed(Exception):
    """A step failed. ``by_fail_step``: a Fail step ended the run on purpose (e.g. the quality gate)."""

    def __init__(
        self, step: str, message: str, log: Path | None, report: Path, by_fail_step: bool = False
    ) -> None:
        super().__init__(f"step {step} failed: {message}")
        self.step, self.message, self.log, self.report = step, message, log, report
        self.by_fail_step = by_fail_step


@dataclass
class StepState:
    name: str
    type: str
    display_name: str
    status: str = "pending"  # pending | running | done | cached | failed | skipped
    started: float | None = None
    seconds: float | None = None
    message: str = ""
    log: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    cache_key: str | None = None
    pid: int | None = None  # the job's process while it runs, and its start time (processes.py)
    pid_started: int | None = None


def all_steps(definition: dict[str, Any]) -> list[tuple[dict[str, Any], str | None, str | None]]:
    """(step, parent condition, branch "if"/"else") for every step, branches included."""
    out: list[tuple[dict[str, Any], str | None, str | None]] = []

    def visit(steps: list[dict[str, Any]], parent: str | None, branch: str | None) -> None:
        for step in steps:
            out.append((step, parent, branch))
            if step.get("Type") == "Condition":
                visit(step["Arguments"].get("IfSteps", []), step["Name"], "if")
                visit(step["Arguments"].get("ElseSteps", []), step["Name"], "else")

    visit(definition.get("Steps", []), None, None)
    return out


def check_supported(definition: dict[str, Any]) -> None:
    unsupported = [
        f"{s['Name']} ({s.get('Type')})"
        for s, _, _ in all_steps(definition)
        if s.get("Type") not in SUPPORTED_TYPES
    ]
    if unsupported:
        raise ExecutorError(
            "the local executor cannot run step(s) "
            + ", ".join(unsupported)
            + f"; it runs {', '.join(SUPPORTED_TYPES)} steps. Run this pipeline in SageMaker, "
            "or remove those steps from the definition"
        )


def order_steps(definition: dict[str, Any]) -> list[str]:
    """A dependency order; ties keep definition order. A cycle or an unknown dependency is an error."""
    steps = all_steps(definition)
    names = [s["Name"] for s, _, _ in steps]
    deps: dict[str, set[str]] = {}
    for step, parent, _ in steps:
        refs = step_references(step.get("Arguments", {})) | set(step.get("DependsOn", []))
        if step.get("Type") == "Condition":
            refs = step_references(step["Arguments"].get("Conditions", [])) | set(step.get("DependsOn", []))
        if step.get("Type") == "Fail":
            refs = step_references(step["Arguments"].get("ErrorMessage", ""))
        if parent:
            refs.add(parent)
        unknown = refs - set(names)
        if unknown:
            raise ExecutorError(f"step {step['Name']} refers to unknown step(s) {', '.join(sorted(unknown))}")
        deps[step["Name"]] = refs
    ordered: list[str] = []
    while len(ordered) < len(names):
        ready = [n for n in names if n not in ordered and deps[n] <= set(ordered)]
        if not ready:
            raise ExecutorError(
                "the steps' dependencies form a cycle: " + ", ".join(n for n in names if n not in ordered)
            )
        ordered.append(ready[0])
    return ordered


def iso_duration_seconds(text: str) -> float:
    match = re.fullmatch(
        r"P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?", text.upper()
    )
    if not match:
        raise ExecutorError(f"CacheConfig ExpireAfter {text!r} is not an ISO 8601 duration")
    y, mo, w, d, h, mi, s = (int(g) if g else 0 for g in match.groups())
    return ((((y * 365 + mo * 30 + w * 7 + d) * 24 + h) * 60 + mi) * 60) + s


def disk_full_message(exc: OSError, store_root: Path, then: str) -> str:
    """What ran out, where, and what to do, for an ENOSPC/EDQUOT ``exc`` while working on the store."""
    where = exc.filename or store_root
    free = shutil.disk_usage(store_root).free if store_root.exists() else 0
    return (
        f"no space left on the device while writing {where} ({free / 2**20:.0f} MiB free on the file "
        f"system of {store_root}). Earlier checkpoints and outputs are intact. Free some space (old runs "
        f"under {store_root / 'runs'}, the cache under {store_root / 'cache'}), then {then}"
    )


def finite(value: Any) -> Any:
    """``value`` with NaN and infinities as None: a diverged fine-tune reports eval_loss NaN, and NaN is
    not JSON (the report must still be written, and read by any JSON reader)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def read_saved_state(path: Path, execution_id: str) -> dict[str, Any]:
    """An execution's state.json with what resuming needs (steps, parameters, definition key), or an
    ExecutorError naming the file: a resume must never guess from a damaged state."""
    try:
        state = read_json_object(path)
        state["steps"], state["parameters"] = dict(state["steps"]), dict(state["parameters"])
        str(state["definition_sha256"])
    except (UnreadableFile, KeyError, TypeError, ValueError) as exc:
        why = exc.why if isinstance(exc, UnreadableFile) else f"lacks {exc}"
        raise ExecutorError(
            f"execution {execution_id} cannot be resumed: its state file {path} {why}. Start a new run "
            "without --resume: steps whose inputs did not change come from the cache"
        ) from None
    return state


def new_execution_id() -> str:
    return dt.datetime.now().strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


class Executor:
    def __init__(
        self,
        definition: dict[str, Any],
        store_root: Path,
        pipeline_name: str,
        parameters: dict[str, Any],
        execution_id: str,
        docker: bool = False,
        job_env: dict[str, dict[str, str]] | None = None,
        on_change: Callable[[list[StepState]], None] | None = None,
        on_line: Callable[[str, str], None] | None = None,
        definition_sha256: str | None = None,
        invocation: dict[str, Any] | None = None,
        on_note: Callable[[str], None] | None = None,
    ) -> None:
        check_supported(definition)
        self.definition = definition
        self.store_root = store_root.resolve()
        self.store = LocalStore(self.store_root)
        self.pipeline = pipeline_name
        self.parameters = parameters
        self.execution_id = execution_id
        self.docker = docker
        self.job_env = job_env or {}  # executor-level additions per step type (e.g. the local MLflow URI)
        self.on_change = on_change or (lambda states: None)
        self.on_line = on_line
        self.on_note = on_note or (lambda note: print(f"note: {note}", file=sys.stderr))
        self.run_dir = self.store_root / "runs" / execution_id
        self.steps = {s["Name"]: (s, parent, branch) for s, parent, branch in all_steps(definition)}
        self.order = order_steps(definition)
        self.states = {
            name: StepState(name, s["Type"], s.get("DisplayName") or name)
            for name, (s, _, _) in self.steps.items()
        }
        self.outcomes: dict[str, bool] = {}
        started = dt.datetime.now(dt.timezone.utc).isoformat()
        self.ctx = Context(
            parameters=parameters,
            execution={
                "PipelineExecutionId": execution_id,
                "PipelineName": pipeline_name,
                "PipelineArn": f"arn:aws:sagemaker:local:{LOCAL_ACCOUNT}:pipeline/{pipeline_name}",
                "PipelineExecutionArn": f"arn:aws:sagemaker:local:{LOCAL_ACCOUNT}:pipeline/{pipeline_name}/execution/{execution_id}",
                "StartDateTime": started,
                "CurrentDateTime": started,
            },
            read_property_file=self.read_property_file,
        )
        self.definition_sha256 = (
            definition_sha256 or hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()
        )
        # How the run was asked for (config files, --set), so a refused --resume can say what differs.
        self.invocation = invocation or {}

    # ---- state ---------------------------------------------------------------------------------

    def save_state(self) -> None:
        state = {
            "pipeline": self.pipeline,
            "execution_id": self.execution_id,
            "parameters": self.parameters,
            "definition_sha256": self.definition_sha256,
            "invocation": self.invocation,
            "outcomes": self.outcomes,
            "steps": {n: asdict(s) for n, s in self.states.items()},
        }
        write_json_atomic(self.run_dir / STATE_FILE, finite(state))

    def load_state(self) -> list[str]:
        """Resume: finished steps keep their outputs; everything else runs again. Returns notes for the
        user: which steps an earlier, dead attempt had left "running"."""
        path = self.run_dir / STATE_FILE
        if not path.is_file():
            raise ExecutorError(f"no execution {self.execution_id} to resume (no {path})")
        state = read_saved_state(path, self.execution_id)
        saved_steps = state["steps"]
        if state["definition_sha256"] != self.definition_sha256:
            raise ExecutorError(self._changed_definition(state.get("invocation")))
        notes = []
        self.outcomes = state.get("outcomes", {})
        for name, saved in saved_steps.items():
            if name not in self.states or not isinstance(saved, dict):
                continue
            if saved.get("status") in FINISHED:
                try:
                    self.states[name] = StepState(**{**saved, "message": "finished in an earlier attempt"})
                    self.ctx.properties[name] = dict(saved["properties"])
                except (TypeError, KeyError, ValueError) as exc:
                    raise ExecutorError(
                        f"execution {self.execution_id} cannot be resumed: step {name} in its state file "
                        f"{path} is damaged ({type(exc).__name__}: {exc}). Start a new run without --resume: "
                        "steps whose inputs did not change come from the cache"
                    ) from None
            elif saved.get("status") == "running":
                notes.append(self._dead_running_step(name, saved))
        return notes

    def _changed_definition(self, saved: dict[str, Any] | None) -> str:
        """Why --resume is refused when the definition differs, naming the flags that differ."""
        message = f"execution {self.execution_id} ran another pipeline definition"
        saved = saved or {}
        differs = [
            f"{flag}: then {saved.get(key) or 'none'}, now {self.invocation.get(key) or 'none'}"
            for key, flag in (("config", "--config"), ("set", "--set"))
            if saved.get(key, []) != self.invocation.get(key, [])
        ]
        if differs:
            return (
                f"{message}: it was started with other flags ({'; '.join(differs)}). Resume it with the "
                "same --config and --set flags it was started with, or start a new run"
            )
        return (
            f"{message} (the config files or the code changed since it started). Start a new run instead "
            "of resuming: steps whose inputs did not change come from the cache"
        )

    def _dead_running_step(self, name: str, saved: dict[str, Any]) -> str:
        """A step an earlier attempt left "running". Its runner is gone (we hold the store lock), but its
        job may have outlived it; two trainers on one checkpoint prefix must never run, so refuse."""
        pid, started = saved.get("pid"), saved.get("pid_started")
        if pid is not None and is_running(int(pid), JOB_MARKER, started):
            raise ExecutorError(
                f"step {name} of execution {self.execution_id} is still running as pid {pid}, left behind "
                f"by an earlier attempt; stop it first (kill {pid}), then resume"
            )
        return (
            f"step {name} was left running by an earlier attempt that is gone"
            + (f" (its job, pid {pid}, has exited)" if pid is not None else "")
            + "; it runs again"
            + (" and resumes from its checkpoints" if saved.get("type") == "Training" else "")
        )

    # ---- properties ----------------------------------------------------------------------------

    def read_property_file(self, step: str, name: str) -> Any:
        definition = self.steps.get(step, ({}, None, None))[0]
        declared = {f["PropertyFileName"]: f for f in definition.get("PropertyFiles", [])}
        if name not in declared:
            raise ExpressionError(f"step {step} declares no property file {name!r}")
        if step not in self.ctx.properties:
            raise ExpressionError(f"property file {step}.{name}: step {step} has not run")
        spec = declared[name]
        outputs = self.ctx.properties[step]["ProcessingOutputConfig"]["Outputs"]
        uri = outputs[spec["OutputName"]]["S3Output"]["S3Uri"].rstrip("/") + "/" + spec["FilePath"]
        path = self.store.path(uri)
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ExpressionError(f"property file {step}.{name} ({uri}, local {path}): {exc}") from None

    # ---- running -------------------------------------------------------------------------------

    def run(self, resume: bool = False) -> dict[str, Any]:
        notes = self.load_state() if resume else []
        for note in notes:
            self._say(note)
        self._reserve_disk()
        self.save_state()
        self.on_change(list(self.states.values()))
        for name in self.order:
            state = self.states[name]
            if state.status in FINISHED:
                continue
            step, parent, branch = self.steps[name]
            if not self._selected(name):
                state.status, state.message = "skipped", "branch not taken"
                self._changed()
                continue
            state.status, state.started, state.message = "running", time.time(), ""
            self._changed()
            try:
                self._run_step(step, state)
            except ExecutionFailed:  # a Fail step: its report is written; the reserve is not needed
                self._release_disk()
                raise
            except (
                JobFailed,
                JobSetupError,
                ExpressionError,
                UserError,  # ExecutorError, ServiceRuleError, StorePathError and the rest a user can fix
                ServiceRuleError,
                FileNotFoundError,
            ) as exc:
                self._release_disk()
                log = getattr(exc, "log", None) or (self.run_dir / "logs" / f"{name}.log")
                self._fail(state, str(getattr(exc, "reason", exc)))
                raise ExecutionFailed(
                    name, state.message, log if log.exists() else None, self.write_report("Failed")
                ) from None
            except KeyboardInterrupt:
                self._release_disk()
                self._fail(state, "interrupted; resume with --resume " + self.execution_id)
                self.write_report("Stopped")
                raise
            except OSError as exc:
                if exc.errno not in DISK_FULL:
                    self._internal_error(name, state, exc)
                self._release_disk()
                self._fail(state, self._disk_full(exc))
                log = self.run_dir / "logs" / f"{name}.log"
                raise ExecutionFailed(
                    name, state.message, log if log.exists() else None, self.write_report("Failed")
                ) from None
            except Exception as exc:  # a bug or the machine (MLflow, ...): keep the traceback, fail cleanly
                self._internal_error(name, state, exc)
        self._release_disk()
        return json.loads(self.write_report("Succeeded").read_text())

    def _internal_error(self, name: str, state: StepState, exc: BaseException) -> None:
        import traceback

        self._release_disk()
        log = self.run_dir / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a") as handle:
            handle.write("".join(traceback.format_exception(exc)))
        self._fail(
            state,
            f"internal error in the local executor: {type(exc).__name__}: {exc} (traceback in {log})",
        )
        raise ExecutionFailed(name, state.message, log, self.write_report("Failed")) from exc

    def _disk_full(self, exc: OSError) -> str:
        return disk_full_message(
            exc, self.store_root, f"continue: mlops run --local --resume {self.execution_id}"
        )

    def _reserve_disk(self) -> None:
        """Keep a few MiB aside for writing this run's failure (see RESERVE_FILE)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            with open(self.run_dir / RESERVE_FILE, "wb") as handle:
                if hasattr(os, "posix_fallocate"):  # real blocks, not a sparse file (Linux)
                    os.posix_fallocate(handle.fileno(), 0, RESERVE_BYTES)
                else:
                    handle.write(bytes(RESERVE_BYTES))
        except OSError:
            (self.run_dir / RESERVE_FILE).unlink(missing_ok=True)  # already full: nothing to reserve

    def _release_disk(self) -> None:
        (self.run_dir / RESERVE_FILE).unlink(missing_ok=True)

    def _say(self, note: str) -> None:
        self.on_note(note)

    def _changed(self) -> None:
        self.save_state()
        self.on_change(list(self.states.values()))

    def _fail(self, state: StepState, message: str) -> None:
        state.status, state.message = "failed", message
        state.seconds = round(time.time() - (state.started or time.time()), 1)
        self._changed()

    def _selected(self, name: str) -> bool:
        """A branch step runs only when its condition chose its branch (and so on up)."""
        _, parent, branch = self.steps[name]
        while parent is not None:
            if parent not in self.outcomes or self.outcomes[parent] != (branch == "if"):
                return False
            _, parent, branch = self.steps[parent]
        return True

    def _run_step(self, step: dict[str, Any], state: StepState) -> None:
        kind = step["Type"]
        if kind == "Condition":
            results = [evaluate_condition(c, self.ctx) for c in step["Arguments"]["Conditions"]]
            outcome = all(r for r, _ in results)
            self.outcomes[state.name] = outcome
            state.properties = {"Outcome": outcome}
            state.message = ("true: " if outcome else "false: ") + " and ".join(t for _, t in results)
        elif kind == "Fail":
            message = to_text(resolve(step["Arguments"].get("ErrorMessage", ""), self.ctx))
            state.seconds = 0.0
            self._fail(state, message)
            raise ExecutionFailed(state.name, message, None, self.write_report("Failed"), by_fail_step=True)
        elif kind == "RegisterModel":
            from pipelines.local.registry import register_model_version

            args = resolve(step["Arguments"], self.ctx)
            state.properties = register_model_version(args, self.store, self.store_root)
            state.message = f"{state.properties['ModelPackageGroupName']} version {state.properties['ModelPackageVersion']}"
        else:
            args = resolve(step["Arguments"], self.ctx)
            if not self._cache_hit(step, args, state):
                state.properties = self._run_job(step, args, state)
                self._remember(step, args, state)
        state.status = state.status if state.status == "cached" else "done"
        state.seconds = round(time.time() - (state.started or time.time()), 1)
        self.ctx.properties[state.name] = state.properties
        self._changed()

    def _run_job(self, step: dict[str, Any], args: dict[str, Any], state: StepState) -> dict[str, Any]:
        name = step["Name"]
        root = self.run_dir / name
        log = self.run_dir / "logs" / f"{name}.log"
        state.log = str(log)
        job_name = f"{self.execution_id}-{name}"[:63]
        check_request(name, step["Type"], args)  # what SageMaker would refuse, the twin refuses
        on_line = self.on_line
        line = (lambda text: on_line(name, text)) if on_line else None

        def started(pid: int, ticks: int | None) -> None:  # recorded, so --resume can tell if it lives on
            state.pid, state.pid_started = pid, ticks
            self.save_state()

        if step["Type"] == "Processing":
            spec, outputs = processing_job(name, args, root, self.store, job_name)
            spec.env.update(self.job_env.get("Processing", {}))
            run_job(spec, log, self.docker, line, started)
            for local, uri, _ in outputs:
                self.store.upload(local, uri)
            return processing_properties(args, job_name)
        spec = training_job(name, args, root, self.store, job_name)
        spec.env.update(self.job_env.get("Training", {}))
        run_job(spec, log, self.docker, line, started)
        return training_properties(job_name, pack_model(root, self.store, args, job_name))

    # ---- caching -------------------------------------------------------------------------------

    def _cache_file(self, step: dict[str, Any], args: dict[str, Any]) -> Path | None:
        config = step.get("CacheConfig") or {}
        if not config.get("Enabled"):
            return None
        keyed = {"Type": step["Type"], **{k: args.get(k) for k in CACHE_FIELDS[step["Type"]]}}
        key = hashlib.sha256(json.dumps(keyed, sort_keys=True, default=str).encode()).hexdigest()
        return self.store_root / "cache" / self.pipeline / step["Name"] / f"{key}.json"

    def _cache_hit(self, step: dict[str, Any], args: dict[str, Any], state: StepState) -> bool:
        path = self._cache_file(step, args)
        if path is None or not path.is_file():
            return False
        try:
            entry = read_json_object(path)
            created, outputs, files = float(entry["created"]), list(entry["outputs"]), dict(entry["files"])
            properties, source = dict(entry["properties"]), entry["execution_id"]
        except (UnreadableFile, KeyError, TypeError, ValueError) as exc:
            why = exc.why if isinstance(exc, UnreadableFile) else f"lacks {exc}"
            self._say(
                f"{step['Name']}: cache entry {path} {why}; running the step again (it will be rewritten)"
            )
            return False
        expire = iso_duration_seconds(step["CacheConfig"].get("ExpireAfter", "P3650D"))
        if time.time() - created > expire:
            return False
        changed = next(
            (uri for uri in outputs if (now := self._output_files(uri)) is None or now != files.get(uri)),
            None,
        )
        if changed is not None:  # gone, truncated or edited since: not the output that was cached
            self._say(
                f"{step['Name']}: the cached output {changed} changed since it was cached; running again"
            )
            return False
        state.properties, state.status = properties, "cached"
        state.cache_key = path.stem
        state.message = f"cache hit from execution {source}"
        return True

    def _output_files(self, uri: str) -> dict[str, list[int]] | None:
        """Every file of an output as {relative path: [size, mtime_ns]}; None when there is none.

        Size and modification time, not a hash: the store holds copies (store.py), so only a deliberate
        edit or a damaged disk changes them, and both change these; hashing every model archive on every
        cache hit would cost seconds per GB."""
        root = self.store.path(uri)
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        if not paths or not root.exists():
            return None
        files = {}
        for path in paths:
            info = path.stat()
            files[str(path.relative_to(root)) if path != root else "."] = [info.st_size, info.st_mtime_ns]
        return files

    def _remember(self, step: dict[str, Any], args: dict[str, Any], state: StepState) -> None:
        path = self._cache_file(step, args)
        if path is None:
            return
        outputs = [
            o["S3Output"]["S3Uri"]
            for o in state.properties.get("ProcessingOutputConfig", {}).get("Outputs", {}).values()
        ]
        if "ModelArtifacts" in state.properties:
            outputs.append(state.properties["ModelArtifacts"]["S3ModelArtifacts"])
        entry = {
            "created": time.time(),
            "execution_id": self.execution_id,
            "properties": state.properties,
            "outputs": outputs,
            "files": {uri: self._output_files(uri) for uri in outputs},
        }
        write_json_atomic(path, entry)
        state.cache_key = path.stem

    # ---- report --------------------------------------------------------------------------------

    def write_report(self, status: str) -> Path:
        report: dict[str, Any] = {
            "pipeline": self.pipeline,
            "execution_id": self.execution_id,
            "status": status,
            "parameters": self.parameters,
            "steps": [
                {
                    k: v
                    for k, v in asdict(self.states[n]).items()
                    if k not in ("started", "pid", "pid_started")
                }
                for n in self.order
            ],
            "metrics": {},
            "gates": {},
            "registered": None,
            "artifacts": {},
        }
        for name in self.order:
            state, (step, _, _) = self.states[name], self.steps[name]
            if state.status not in FINISHED:
                continue
            if step["Type"] == "Condition":
                report["gates"][name] = {"passed": state.properties.get("Outcome"), "detail": state.message}
            if step["Type"] == "RegisterModel":
                report["registered"] = state.properties
            for output in state.properties.get("ProcessingOutputConfig", {}).get("Outputs", {}).values():
                report["artifacts"][f"{name}.{output['OutputName']}"] = output["S3Output"]["S3Uri"]
            if "ModelArtifacts" in state.properties:
                report["artifacts"][f"{name}.model"] = state.properties["ModelArtifacts"]["S3ModelArtifacts"]
            for spec in step.get("PropertyFiles", []):
                try:
                    data = self.read_property_file(name, spec["PropertyFileName"])
                except ExpressionError:
                    continue
                if isinstance(data, dict) and isinstance(data.get("metrics"), dict):
                    report["metrics"].update(
                        {k: v.get("value") if isinstance(v, dict) else v for k, v in data["metrics"].items()}
                    )
        path = self.run_dir / "report.json"
        write_json_atomic(path, finite(report))
        return path
