"""Processing and training jobs on this machine, built from a step's own request arguments.

Each job gets what SageMaker gives the same job (``containers/contract.py``), and nothing from the
developer's shell beyond the contract's allowlist: a folder laid out like ``/opt/ml``
(``MLOPS_OPT_ML``) with processing inputs at their ``LocalPath`` and ``config/processingjobconfig.json``
+ ``config/resourceconfig.json``, or training channels under ``input/data/<channel>`` and
``input/config/{hyperparameters,inputdataconfig,resourceconfig}.json``; the request's ``Environment``
plus the variables SageMaker sets (``TRAINING_JOB_NAME``, ``TRAINING_JOB_ARN``). The failure reason
is read where SageMaker reads it (``output/failure`` for training, ``output/message`` for processing).
The command is the step's container entrypoint and arguments, run with this environment's Python, or
inside the step's image with ``docker run`` when asked and a Docker engine answers. Outputs go to the local S3 store the way
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
from functools import partial
from pathlib import Path
from typing import Any

from containers.contract import (
    CHECKPOINTS,
    DEFAULT_ROOT,
    ENTRYPOINT,
    PROCESSING_JOB,
    TRAINING,
    ContainerKind,
    OptMl,
    OutsideOptMl,
    job_environment,
)
from pipelines.local.expressions import to_text
from pipelines.local.processes import die_with_parent, prctl
from pipelines.local.store import REPO_ROOT, LocalStore
from training.job import Cluster
from training.process_start import start_ticks

# SageMaker starts a training image as `<image> train`; the image's ENTRYPOINT is ours.
TRAIN_COMMAND = [*ENTRYPOINT, "train"]
# The twin has no account or region: its ARNs have SageMaker's shape with these in their place.
LOCAL_ARN = "arn:aws:sagemaker:local:000000000000"
# A File-mode S3 channel as inputdataconfig.json describes it.
FILE_CHANNEL = {
    "TrainingInputMode": "File",
    "S3DistributionType": "FullyReplicated",
    "RecordWrapperType": "None",
}


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
    """One container run: the image's command, the request's ``Environment`` (``env``), what SageMaker
    itself sets for this kind of container (``given``), and its /opt/ml folder."""

    step: str
    image: str
    command: list[str]
    env: dict[str, str]
    root: Path
    kind: ContainerKind = TRAINING
    given: dict[str, str] = field(default_factory=dict)
    network_isolated: bool = False
    extra_mounts: dict[str, str] = field(default_factory=dict)  # host path -> container path

    def environment(self) -> dict[str, str]:
        """The job's whole environment when it runs as a process here (``contract.job_environment``)."""
        return job_environment(self.kind, self.env, self.given, self.root)


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
        # tini as PID 1: it forwards the SIGTERM the docker client gets when its parent dies
        # (processes.die_with_parent); the kernel drops a signal to a namespace's init that installed
        # no handler (pid_namespaces(7)), so our entrypoint as PID 1 would train on.
        "--init",
        "--name",
        f"mlops-local-{spec.step.lower()}-{os.getpid()}",
        "-v",
        f"{spec.root}:{DEFAULT_ROOT}",
    ]
    for host, container in sorted(spec.extra_mounts.items()):
        argv += ["-v", f"{host}:{container}"]
    if spec.network_isolated:
        argv += ["--network", "none"]
    for key, value in sorted({**spec.env, **spec.given}.items()):
        argv += ["-e", f"{key}={value}"]
    executable, *rest = spec.command
    return [*argv, "--entrypoint", executable, spec.image, *rest]


def local_argv(spec: JobSpec) -> list[str]:
    """The same command with this environment's interpreter (the images run ``python``)."""
    executable, *rest = spec.command
    if executable in ("python", "python3"):
        executable = sys.executable
    return [executable, *rest]


def run_job(
    spec: JobSpec,
    log: Path,
    docker: bool,
    on_line: Callable[[str], None] | None = None,
    on_start: Callable[[int, int | None], None] | None = None,
) -> None:
    """Run the job to its end. It dies with this process (``die_with_parent``): an orphaned trainer
    would go on writing the checkpoints a resumed run trains into. ``on_start`` gets its pid and start
    time."""
    log.parent.mkdir(parents=True, exist_ok=True)
    failure = OptMl(spec.root).failure_file(spec.kind)
    if failure is not None:
        failure.unlink(missing_ok=True)  # as SageMaker starts each attempt clean
    if docker:
        argv = docker_argv(spec)
        env = dict(os.environ)  # the docker CLI's own environment; the container's is in its -e flags
    else:
        argv = local_argv(spec)
        env = spec.environment()
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
            preexec_fn=partial(die_with_parent, os.getpid(), prctl()),
        )
        assert proc.stdout is not None
        try:
            if on_start:
                on_start(proc.pid, start_ticks(proc.pid))
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
            if failure is not None and failure.is_file()
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


def single_instance(step: str, count: Any, parameter: str | None = None) -> None:
    """The twin runs one instance per job; a multi-instance job would silently run as one."""
    if int(count) != 1:
        fix = f"run locally with --param {parameter}=1" if parameter else "give the step one instance"
        raise JobSetupError(
            f"{step}: InstanceCount={count}, but the local executor runs one instance per job; {fix}"
        )


def processing_job(
    step: str, args: dict[str, Any], root: Path, store: LocalStore, job_name: str
) -> tuple[JobSpec, list[tuple[Path, str, str]]]:
    """The job and its outputs as (local folder, S3 URI, output name), inputs already in place."""
    single_instance(step, args["ProcessingResources"]["ClusterConfig"]["InstanceCount"])
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
    opt_ml = OptMl(root)
    opt_ml.write_processing_job_config(
        {
            "ProcessingJobArn": f"{LOCAL_ARN}:processing-job/{job_name}",
            "ProcessingJobName": job_name,
            **{k: args[k] for k in PROCESSING_JOB_CONFIG_FIELDS if k in args},
        }
    )
    opt_ml.write_resource_config(PROCESSING_JOB, Cluster.single())
    spec = JobSpec(step, app["ImageUri"], command, env, root, PROCESSING_JOB, network_isolated=isolated)
    return spec, outputs


# The request fields processingjobconfig.json repeats (build-your-own-processing-container.html shows
# its format: the job's ARN and name, then the request's AppSpecification, Environment, inputs, outputs,
# resources, role and stopping condition).
PROCESSING_JOB_CONFIG_FIELDS = (
    "AppSpecification",
    "Environment",
    "NetworkConfig",
    "ProcessingInputs",
    "ProcessingOutputConfig",
    "ProcessingResources",
    "RoleArn",
    "StoppingCondition",
)


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
    resources = args["ResourceConfig"]
    single_instance(step, resources["InstanceCount"], "TrainInstanceCount")
    opt_ml = OptMl(root)
    opt_ml.write_hyperparameters({k: to_text(v) for k, v in args.get("HyperParameters", {}).items()})
    opt_ml.write_resource_config(TRAINING, Cluster.single(to_text(resources["InstanceType"])))
    opt_ml.write_input_data_config(
        {c["ChannelName"]: _channel_config(c) for c in args.get("InputDataConfig", [])}
    )
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
    return JobSpec(
        step,
        args["AlgorithmSpecification"]["TrainingImage"],
        TRAIN_COMMAND,
        env,
        root,
        TRAINING,
        training_given(job_name),
        bool(args.get("EnableNetworkIsolation")),
        mounts,
    )


def training_given(job_name: str) -> dict[str, str]:
    """The variables SageMaker sets in a training container (``contract.TRAINING.env``)."""
    return {"TRAINING_JOB_NAME": job_name, "TRAINING_JOB_ARN": f"{LOCAL_ARN}:training-job/{job_name}"}


def _channel_config(channel: dict[str, Any]) -> dict[str, Any]:
    """A channel as inputdataconfig.json describes it (your-algorithms-training-algo-running-container.html)."""
    s3 = channel["DataSource"]["S3DataSource"]
    config = {
        "TrainingInputMode": channel.get("InputMode", FILE_CHANNEL["TrainingInputMode"]),
        "S3DistributionType": s3.get("S3DataDistributionType", FILE_CHANNEL["S3DistributionType"]),
        "RecordWrapperType": channel.get("RecordWrapperType", FILE_CHANNEL["RecordWrapperType"]),
    }
    if "ContentType" in channel:
        config["ContentType"] = channel["ContentType"]
    return config


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
