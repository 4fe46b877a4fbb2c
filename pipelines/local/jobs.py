"""Processing and training jobs on this machine, built from a step's own request arguments.

Each job gets a folder laid out like ``/opt/ml`` (``MLOPS_OPT_ML``): processing inputs at their
``LocalPath``, training channels under ``input/data/<channel>``, hyperparameters as strings in
``input/config/hyperparameters.json``, checkpoints, ``output/failure``. The command is the step's
container entrypoint and arguments, run with this environment's Python, or inside the step's image
with ``docker run`` when asked and a Docker engine answers. Outputs go to the local S3 store the way
SageMaker uploads them; a training job's model folder is packed as ``model.tar.gz`` under
``<S3OutputPath>/<job name>/output/``, as SageMaker does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from containers.contract import CHECKPOINTS, DEFAULT_ROOT, ENTRYPOINT, ROOT_ENV, OptMl, OutsideOptMl
from pipelines.local.expressions import to_text
from pipelines.local.store import REPO_ROOT, LocalStore

# SageMaker starts a training image as `<image> train`; the image's ENTRYPOINT is ours.
TRAIN_COMMAND = [*ENTRYPOINT, "train"]


class JobFailed(Exception):
    """The job ran and failed; ``reason`` is what it wrote to its failure file (or the exit status)."""

    def __init__(self, reason: str, log: Path, returncode: int = 1) -> None:
        super().__init__(reason)
        self.reason = reason
        self.log = log
        self.returncode = returncode


class JobSetupError(Exception):
    """The job could not start: a missing input, an unusable path. Says which and where."""


@dataclass
class JobSpec:
    """One container run: the image's command, its environment, and its /opt/ml folder."""

    step: str
    image: str
    command: list[str]
    env: dict[str, str]
    root: Path
    network_isolated: bool = False
    extra_mounts: dict[str, str] = field(default_factory=dict)  # host path -> container path


def docker_engine() -> str | None:
    """None when a Docker engine answers; otherwise why not, in words."""
    if shutil.which("docker") is None:
        return "no `docker` command on PATH"
    try:
        probe = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"`docker info` failed: {exc}"
    if probe.returncode != 0:
        return (
            "the Docker engine does not answer (`docker info`: "
            + (probe.stderr.strip() or "no output")[:200]
            + ")"
        )
    return None


def docker_argv(spec: JobSpec) -> list[str]:
    """``docker run`` for the step's image with its /opt/ml folder mounted where the code expects it."""
    argv = [
        "docker",
        "run",
        "--rm",
        "--name",
        f"mlops-local-{spec.step.lower()}-{os.getpid()}",
        "-v",
        f"{spec.root}:{DEFAULT_ROOT}",
    ]
    for host, container in sorted(spec.extra_mounts.items()):
        argv += ["-v", f"{host}:{container}"]
    if spec.network_isolated:
        argv += ["--network", "none"]
    for key, value in sorted(spec.env.items()):
        argv += ["-e", f"{key}={value}"]
    executable, *rest = spec.command
    return [*argv, "--entrypoint", executable, spec.image, *rest]


def local_argv(spec: JobSpec) -> list[str]:
    """The same command with this environment's interpreter (the images run ``python``)."""
    executable, *rest = spec.command
    if executable in ("python", "python3"):
        executable = sys.executable
    return [executable, *rest]


def run_job(spec: JobSpec, log: Path, docker: bool, on_line: Callable[[str], None] | None = None) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    failure = OptMl(spec.root).failure_file
    failure.unlink(missing_ok=True)  # as SageMaker starts each attempt clean
    if docker:
        argv = docker_argv(spec)
        env = dict(os.environ)
    else:
        argv = local_argv(spec)
        env = {**os.environ, **spec.env, ROOT_ENV: str(spec.root)}
    with open(log, "a", encoding="utf-8") as out:
        out.write(f"$ {' '.join(argv)}\n")
        out.flush()
        proc = subprocess.Popen(
            argv,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            cwd=REPO_ROOT,
        )
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                out.write(line)
                out.flush()
                if on_line:
                    on_line(line.rstrip("\n"))
        except BaseException:
            # Ctrl-C, or anything failing in this reader: the job must not outlive us.
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise
        code = proc.wait()
    if code != 0:
        reason = (
            failure.read_text().strip()
            if failure.is_file()
            else f"exited with status {code} and wrote no failure file"
        )
        raise JobFailed(reason, log, code)


def _container_path(root: Path, local_path: str, what: str) -> Path:
    try:
        return OptMl(root).at(local_path)
    except OutsideOptMl:
        raise JobSetupError(
            f"{what}: LocalPath {local_path!r} is outside /opt/ml; the local executor maps /opt/ml only"
        ) from None


# ---- processing -----------------------------------------------------------------------------------


def processing_job(
    step: str, args: dict[str, Any], root: Path, store: LocalStore
) -> tuple[JobSpec, list[tuple[Path, str, str]]]:
    """The job and its outputs as (local folder, S3 URI, output name), inputs already in place."""
    for item in args.get("ProcessingInputs", []):
        s3 = item.get("S3Input")
        if s3 is None:
            raise JobSetupError(
                f"{step}: input {item.get('InputName')!r} is not an S3 input; the local executor maps S3 only"
            )
        dst = _container_path(root, s3["LocalPath"], f"{step} input {item['InputName']!r}")
        if dst.exists():
            shutil.rmtree(dst)
        dst.mkdir(parents=True)
        if store.download(s3["S3Uri"], dst) == 0:
            raise JobSetupError(
                f"{step}: input {item['InputName']!r}: no object at {s3['S3Uri']} "
                f"(local store: {store.path(s3['S3Uri'])})"
            )
    outputs = []
    for item in args.get("ProcessingOutputConfig", {}).get("Outputs", []):
        local = _container_path(root, item["S3Output"]["LocalPath"], f"{step} output {item['OutputName']!r}")
        if local.exists():
            shutil.rmtree(local)
        local.mkdir(parents=True)
        outputs.append((local, item["S3Output"]["S3Uri"], item["OutputName"]))
    app = args["AppSpecification"]
    command = [*app.get("ContainerEntrypoint", []), *map(to_text, app.get("ContainerArguments", []))]
    if not command:
        raise JobSetupError(
            f"{step}: AppSpecification has no ContainerEntrypoint; the local executor needs the command"
        )
    isolated = bool(args.get("NetworkConfig", {}).get("EnableNetworkIsolation"))
    env = {k: to_text(v) for k, v in args.get("Environment", {}).items()}
    return JobSpec(step, app["ImageUri"], command, env, root, isolated), outputs


def processing_properties(args: dict[str, Any], job_name: str) -> dict[str, Any]:
    """The DescribeProcessingJob fields later steps read; Outputs are indexed by name, as in Get paths."""
    outputs = {o["OutputName"]: o for o in args.get("ProcessingOutputConfig", {}).get("Outputs", [])}
    return {
        "ProcessingJobName": job_name,
        "ProcessingJobStatus": "Completed",
        "ProcessingOutputConfig": {"Outputs": outputs},
    }


# ---- training -------------------------------------------------------------------------------------


def training_job(step: str, args: dict[str, Any], root: Path, store: LocalStore, job_name: str) -> JobSpec:
    opt_ml = OptMl(root)
    opt_ml.write_hyperparameters({k: to_text(v) for k, v in args.get("HyperParameters", {}).items()})
    for channel in args.get("InputDataConfig", []):
        name = channel["ChannelName"]
        uri = channel["DataSource"]["S3DataSource"]["S3Uri"]
        dst = opt_ml.input_data(name)
        if dst.exists():
            shutil.rmtree(dst)
        dst.mkdir(parents=True)
        if store.download(uri, dst) == 0:
            # SageMaker gives an empty prefix as an empty channel only for optional data; ours are files.
            if name == "train":
                raise JobSetupError(
                    f"{step}: channel 'train': no object at {uri} (local store: {store.path(uri)})"
                )
    empty_model_dir(opt_ml)
    mounts = {}
    checkpoint = args.get("CheckpointConfig")
    if checkpoint:
        # SageMaker syncs /opt/ml/checkpoints with the S3 prefix continuously; a link to the store's
        # folder is that sync, so a later attempt or execution with the same prefix resumes from it.
        target = store.path(checkpoint["S3Uri"])
        target.mkdir(parents=True, exist_ok=True)
        link = opt_ml.checkpoint_dir
        if link.is_symlink() or link.is_file():
            link.unlink()
        elif link.is_dir():
            shutil.rmtree(link)
        link.symlink_to(target, target_is_directory=True)
        mounts[str(target)] = checkpoint.get("LocalPath", CHECKPOINTS)
    env = {k: to_text(v) for k, v in args.get("Environment", {}).items()}
    env["TRAINING_JOB_NAME"] = job_name
    return JobSpec(
        step,
        args["AlgorithmSpecification"]["TrainingImage"],
        TRAIN_COMMAND,
        env,
        root,
        bool(args.get("EnableNetworkIsolation")),
        mounts,
    )


def empty_model_dir(opt_ml: OptMl) -> None:
    """SageMaker starts every attempt with an empty /opt/ml/model; leftovers would end up in model.tar.gz."""
    if opt_ml.model_dir.exists():
        shutil.rmtree(opt_ml.model_dir)
    opt_ml.model_dir.mkdir(parents=True)


def pack_model(root: Path, store: LocalStore, args: dict[str, Any], job_name: str) -> str:
    """``/opt/ml/model`` -> ``<S3OutputPath>/<job name>/output/model.tar.gz``, as SageMaker packs it."""
    uri = args["OutputDataConfig"]["S3OutputPath"].rstrip("/") + f"/{job_name}/output/model.tar.gz"
    target = store.path(uri)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    model = OptMl(root).model_dir
    # compresslevel 1: the weights barely compress, and level 9 would cost minutes per GB.
    with tarfile.open(partial, "w:gz", compresslevel=1) as tar:
        for path in sorted(model.iterdir()):
            tar.add(path, arcname=path.name)
    partial.replace(target)
    return uri


def training_properties(job_name: str, model_uri: str) -> dict[str, Any]:
    return {
        "TrainingJobName": job_name,
        "TrainingJobStatus": "Completed",
        "ModelArtifacts": {"S3ModelArtifacts": model_uri},
    }
