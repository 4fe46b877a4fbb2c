"""The one container entrypoint: ``python -m containers.entrypoint <command>``.

SageMaker runs training images as ``<image> train``; the same command runs on a laptop with
``MLOPS_OPT_ML`` pointing at a local folder laid out like ``/opt/ml``.

Commands: ``train`` (a SageMaker training job), ``prepare`` (validate, tokenize and pack once),
``evaluate`` and ``compile`` (processing jobs), ``serve`` (an endpoint).

Exit codes: 0 success, 2 a user error (bad data, bad hyperparameters; no traceback), 1 anything
else (a bug or an infrastructure failure; traceback kept). Both failures write the reason where
SageMaker reads it for the command's kind of job (``containers/contract.py``): ``/opt/ml/output/failure``
for ``train`` (the training job's FailureReason), ``/opt/ml/output/message`` for the processing commands
(the processing job's ExitMessage); ``serve`` logs it only.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import shutil
import signal
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from containers.contract import PROCESSING_JOB, SERVING, TRAINING, ContainerKind, OptMl
from training.errors import UserError
from training.files import DISK_FULL

if TYPE_CHECKING:
    from training.job import TrainJob

log = logging.getLogger("entrypoint")

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1
# Below this much free space, a failure is taken for a full disk even when the error does not say so:
# torch.save reports ENOSPC as a RuntimeError ("file write failed"), without the errno.
NEARLY_FULL_BYTES = 16 << 20


def _setup_logging() -> None:
    # Plain lines on stdout: CloudWatch keeps them, and SageMaker metric regexes read them.
    logging.basicConfig(
        level=os.environ.get("MLOPS_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stdout,
        force=True,
    )
    for noisy in ("httpx", "urllib3", "filelock", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_train(opt_ml: OptMl, args: argparse.Namespace) -> None:
    from training.backends import choose_backend, get_runner, neuron_devices_present
    from training.neuron_sdk import neuron_sdk_available

    job = _train_job(opt_ml)
    hp = job.hp
    backend = choose_backend(hp.backend, neuron_sdk_available(), neuron_devices_present())
    if job.cluster.size > 1 and backend != "neuron":
        # Each node would train alone on the whole data and upload its own model: refuse instead.
        raise UserError(
            f"this training job has {job.cluster.size} instances, but backend={backend} trains on one; "
            "set TrainInstanceCount=1, or backend=neuron (torchrun across the instances)"
        )
    if args.neuron_worker:
        from training.backends.neuron_backend import run_worker

        run_worker(job)
        return
    log.info("backend=%s base_model=%s max_steps=%d", backend, job.model_source, hp.max_steps)
    get_runner(backend)(job)


def _train_job(opt_ml: OptMl) -> TrainJob:
    """The TrainJob of a SageMaker training job: hyperparameters, channels and output folders."""
    from training.base_model import resolve_base_model
    from training.hyperparameters import parse_sagemaker_hyperparameters
    from training.job import TrainJob

    hp = parse_sagemaker_hyperparameters(opt_ml.read_hyperparameters(), str(opt_ml.hyperparameters_file))
    train_path = opt_ml.input_data("train")
    if not train_path.exists():
        raise UserError(
            f"the required `train` channel is missing (expected data at {train_path}); "
            "give the training job a `train` input channel with JSONL files"
        )
    validation = opt_ml.input_data("validation")
    source, gguf = resolve_base_model(opt_ml.input_data("model"), hp.base_model)
    return TrainJob(
        hp=hp,
        train_path=train_path,
        # An empty channel folder is no channel (the Prepare step leaves one when there is no validation data).
        validation_path=validation if validation.is_dir() and any(validation.iterdir()) else None,
        model_source=source,
        gguf_file=gguf,
        model_dir=opt_ml.model_dir,
        checkpoint_dir=opt_ml.checkpoint_dir,
        run_name=os.environ.get("TRAINING_JOB_NAME", "finetune"),
        job_name=os.environ.get("TRAINING_JOB_NAME"),  # SageMaker sets it (contract.TRAINING)
        failure_file=opt_ml.failure_file(TRAINING),
        cluster=opt_ml.read_cluster(TRAINING),
    )


def run_prepare(opt_ml: OptMl, args: argparse.Namespace) -> None:
    from training.base_model import load_tokenizer, resolve_base_model
    from training.prepare import PrepareSettings, run_prepare

    train = Path(args.train or opt_ml.processing("train"))
    if not train.exists():
        raise UserError(f"--train: {train} does not exist; give the training JSONL file or folder there")
    validation = Path(args.validation or opt_ml.processing("validation"))
    if args.validation and not validation.exists():
        raise UserError(f"--validation: {validation} does not exist")
    has_validation = validation.is_file() or (validation.is_dir() and any(validation.iterdir()))
    model_dir = Path(args.model_dir or opt_ml.processing("model"))
    if not args.base_model and not (model_dir.is_dir() and any(model_dir.iterdir())):
        raise UserError(
            f"--model-dir: {model_dir} holds no base model; the tokenizer comes from it. Give the "
            "base model folder there, or --base-model <folder or Hub id>"
        )
    source, gguf = resolve_base_model(model_dir, args.base_model or str(model_dir))
    settings = PrepareSettings(
        max_seq_length=args.max_seq_length, overlong=args.overlong, skip_invalid_lines=args.skip_invalid_lines
    )
    output_root = Path(args.output_dir) if args.output_dir else opt_ml.root / "processing"
    base_sha = _base_model_sha256(source)
    run_prepare(
        train,
        validation if has_validation else None,
        load_tokenizer(source, gguf),
        output_root,
        settings,
        base_sha,
    )


def _base_model_sha256(source: str) -> str:
    from training.fingerprints import folder_sha256

    # A Hub id (local use only; pipeline jobs have no internet) is identified by its name.
    return (
        folder_sha256(Path(source)) if Path(source).is_dir() else hashlib.sha256(source.encode()).hexdigest()
    )


def run_evaluate(opt_ml: OptMl, args: argparse.Namespace) -> None:
    from inference.evaluate import EvalSettings, evaluate, write_evaluation
    from inference.model_files import model_folder

    model_dir = model_folder(Path(args.model_dir or opt_ml.processing("model")), "--model-dir")
    data = Path(args.data or opt_ml.processing("validation"))
    if not data.exists():
        raise UserError(f"--data: {data} does not exist; give the held-out JSONL file or folder there")
    base = _comparison_base(opt_ml, args.base_model)
    settings = EvalSettings(
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        max_seq_length=args.max_seq_length,
        prompt_length=args.prompt_length,
    )
    report = evaluate(str(model_dir), data, settings, base)
    path = write_evaluation(report, Path(args.output_dir or opt_ml.processing("evaluation")))
    from training.metrics import format_metrics

    log.info(format_metrics({k: v["value"] for k, v in report["metrics"].items()}))
    log.info("evaluation written to %s", path)


def _comparison_base(opt_ml: OptMl, flag: str | None) -> tuple[str, str | None] | None:
    """The base model to compare against: --base-model, else the processing input if the step has one."""
    from inference.model_files import model_folder
    from training.base_model import resolve_base_model

    base_dir = Path(flag or opt_ml.processing("base_model"))
    if not (flag or base_dir.exists()):
        return None
    if not base_dir.exists():
        raise UserError(f"--base-model: {base_dir} does not exist")
    if (base_dir / "model.tar.gz").is_file():
        return (str(model_folder(base_dir, "--base-model")), None)
    return resolve_base_model(base_dir, str(base_dir))


def run_compile(opt_ml: OptMl, args: argparse.Namespace) -> None:
    from inference.compile import CompileSettings, compile_model
    from inference.model_files import model_folder

    model_dir = model_folder(Path(args.model_dir or opt_ml.processing("model")), "--model-dir")
    settings = CompileSettings(
        target=args.target,
        batch_size=args.batch_size,
        sequence_length=args.sequence_length,
        tensor_parallel_size=args.tensor_parallel_size,
        dtype=args.dtype,
        max_new_tokens=args.max_new_tokens,
    )
    report = compile_model(
        model_dir, Path(args.output_dir or opt_ml.processing("compiled")), settings, archive=args.archive
    )
    log.info(
        "compiled for %s: batch_size=%d sequence_length=%d in %.1f s",
        report["target"],
        report["batch_size"],
        report["sequence_length"],
        report["duration_seconds"],
    )


def serve_port(env: dict[str, str] | None = None, flag: int | None = None) -> int:
    """SageMaker's own variable wins over the default 8080; an explicit --port wins over both."""
    if flag is not None:
        if not 0 < flag < 65536:
            raise UserError(f"--port {flag} is not a TCP port: give 1-65535 (SageMaker serves on 8080)")
        return flag
    raw = (os.environ if env is None else env).get("SAGEMAKER_BIND_TO_PORT", "8080")
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise UserError(f"SAGEMAKER_BIND_TO_PORT={raw!r} is not a TCP port (1-65535)")
    return int(raw)


def run_serve(opt_ml: OptMl, args: argparse.Namespace) -> None:
    from inference.model_files import model_folder
    from inference.neuron_serve import is_neuron_artifact

    port = serve_port(flag=args.port)  # before loading anything: a bad port is known at once
    model_dir = model_folder(Path(args.model_dir) if args.model_dir else opt_ml.model_dir, "--model-dir")
    if is_neuron_artifact(model_dir):
        _serve_neuron(model_dir, args)
    from inference.server import load_limits, serve

    limits = load_limits(
        model_dir,
        {
            "batch_size": args.batch_size,
            "sequence_length": args.sequence_length,
            "max_new_tokens": args.max_new_tokens,
            "batch_wait_ms": args.batch_wait_ms,
        },
    )
    serve(model_dir, limits, args.host, port, args.model_name or model_dir.name)


def _serve_neuron(model_dir: Path, args: argparse.Namespace) -> NoReturn:
    """A compiled inf2 artifact: hand over to the vLLM Neuronx DLC's server (inference/neuron_serve.py)."""
    from inference.neuron_serve import exec_neuron_server
    from inference.serving_contract import SM_ON_BATCH_SIZE, SM_ON_SEQUENCE_LENGTH

    unsupported = [
        flag
        for flag, value in (
            ("--max-new-tokens", args.max_new_tokens),
            ("--batch-wait-ms", args.batch_wait_ms),
        )
        if value is not None
    ]
    if unsupported:
        raise UserError(
            f"{', '.join(unsupported)} apply to the CPU/CUDA server only; {model_dir} is a compiled "
            "Neuron artifact, served by vLLM with the compiled shapes. Drop the flag(s)"
        )
    env = dict(os.environ)
    # Flags for the shapes become the SM_ON_* the DLC reads, so they meet the same compiled-shape check.
    for key, value in (
        (SM_ON_BATCH_SIZE, args.batch_size),
        (SM_ON_SEQUENCE_LENGTH, args.sequence_length),
    ):
        if value is not None:
            env[key] = str(value)
    exec_neuron_server(model_dir, serve_port(flag=args.port), env, served_model_name=args.model_name)


# ---- command line ----------------------------------------------------------------------------------

Subcommands = Any  # argparse's _SubParsersAction, which typeshed keeps private


def _add_train(commands: Subcommands) -> None:
    train = commands.add_parser("train", help="LoRA fine-tune following the SageMaker training contract")
    # Internal: the per-process body torchrun starts on Trainium.
    train.add_argument("--neuron-worker", action="store_true", help=argparse.SUPPRESS)
    train.set_defaults(run=run_train)


def _add_prepare(commands: Subcommands) -> None:
    pr = commands.add_parser(
        "prepare", help="validate, tokenize and pack the data once (the pipeline's Prepare step)"
    )
    pr.add_argument("--train", help="training JSONL file or folder (default: <opt_ml>/processing/train)")
    pr.add_argument(
        "--validation",
        help="held-out JSONL file or folder (default: <opt_ml>/processing/validation if present)",
    )
    pr.add_argument(
        "--model-dir", help="base model folder, for its tokenizer (default: <opt_ml>/processing/model)"
    )
    pr.add_argument("--base-model", help="base model folder or Hub id when --model-dir is empty")
    pr.add_argument(
        "--output-dir",
        help="root of packed_train/, packed_validation/, stats/ (default: <opt_ml>/processing)",
    )
    pr.add_argument(
        "--max-seq-length",
        type=int,
        required=True,
        help="block length; must equal the fine-tune's max_seq_length",
    )
    pr.add_argument(
        "--overlong", choices=["reject", "truncate"], default="reject", help="examples longer than a block"
    )
    pr.add_argument(
        "--skip-invalid-lines", action="store_true", help="skip and count bad lines instead of failing"
    )
    pr.set_defaults(run=run_prepare)


def _add_evaluate(commands: Subcommands) -> None:
    from inference.evaluate import EvalSettings

    ev = commands.add_parser(
        "evaluate", help="held-out loss, perplexity and exact match, optionally against the base model"
    )
    ev.add_argument(
        "--model-dir", help="fine-tuned model folder or its model.tar.gz (default: <opt_ml>/processing/model)"
    )
    ev.add_argument("--data", help="held-out JSONL file or folder (default: <opt_ml>/processing/validation)")
    ev.add_argument(
        "--base-model",
        help="base model folder for comparison (default: <opt_ml>/processing/base_model if present)",
    )
    ev.add_argument(
        "--output-dir", help="where evaluation.json goes (default: <opt_ml>/processing/evaluation)"
    )
    ev.add_argument(
        "--batch-size",
        type=int,
        default=EvalSettings.batch_size,
        help="sequences per forward pass (one static shape)",
    )
    ev.add_argument(
        "--max-new-tokens", type=int, default=EvalSettings.max_new_tokens, help="generation budget per answer"
    )
    ev.add_argument(
        "--max-seq-length",
        type=int,
        default=EvalSettings.max_seq_length,
        help="block length for the loss pass",
    )
    ev.add_argument(
        "--prompt-length",
        type=int,
        default=EvalSettings.prompt_length,
        help="fixed prompt length (default: longest prompt, rounded up to 16)",
    )
    ev.set_defaults(run=run_evaluate)


def _add_compile(commands: Subcommands) -> None:
    from inference.compile import DTYPES, TARGETS, CompileSettings

    co = commands.add_parser(
        "compile", help="export for inf2 (Neuron SDK) or package for cpu, at static shapes"
    )
    co.add_argument(
        "--target",
        required=True,
        choices=list(TARGETS),
        help="inf2/trn2: optimum-neuron export; cpu: packaging",
    )
    co.add_argument(
        "--model-dir", help="merged model folder or model.tar.gz (default: <opt_ml>/processing/model)"
    )
    co.add_argument("--output-dir", help="artifact folder (default: <opt_ml>/processing/compiled)")
    co.add_argument("--batch-size", type=int, default=CompileSettings.batch_size, help="static batch size")
    co.add_argument(
        "--sequence-length",
        type=int,
        default=CompileSettings.sequence_length,
        help="static prompt + completion length",
    )
    co.add_argument(
        "--tensor-parallel-size",
        type=int,
        default=CompileSettings.tensor_parallel_size,
        help="NeuronCores per replica (inf2/trn2)",
    )
    co.add_argument("--dtype", default=CompileSettings.dtype, help=" | ".join(DTYPES))
    co.add_argument(
        "--max-new-tokens",
        type=int,
        default=CompileSettings.max_new_tokens,
        help="cpu: default and cap for one completion",
    )
    co.add_argument(
        "--archive",
        action="store_true",
        help="pack the artifact as model.tar.gz (SageMaker hosting's ModelDataUrl); compile_report.json stays beside it",
    )
    co.set_defaults(run=run_compile)


def _add_serve(commands: Subcommands) -> None:
    sv = commands.add_parser(
        "serve", help="HTTP server: GET /ping, POST /invocations (OpenAI chat completions)"
    )
    sv.add_argument("--model-dir", help="model folder (default: <opt_ml>/model)")
    sv.add_argument("--host", default="0.0.0.0", help="bind address (default 0.0.0.0, as SageMaker needs)")
    sv.add_argument("--port", type=int, default=None, help="default: $SAGEMAKER_BIND_TO_PORT or 8080")
    sv.add_argument("--batch-size", type=int, default=None, help="most requests per generate call")
    sv.add_argument("--sequence-length", type=int, default=None, help="most prompt + completion tokens")
    sv.add_argument("--max-new-tokens", type=int, default=None, help="default and cap for max_tokens")
    sv.add_argument("--batch-wait-ms", type=float, default=None, help="how long a batch waits for company")
    sv.add_argument(
        "--model-name", default=None, help="the `model` reported in responses (default: folder name)"
    )
    sv.set_defaults(run=run_serve)


def build_parser() -> argparse.ArgumentParser:
    """Every command's flags; each subparser sets ``run``, the function that carries the command out."""
    parser = argparse.ArgumentParser(prog="containers.entrypoint", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_train, _add_prepare, _add_evaluate, _add_compile, _add_serve):
        add(commands)
    return parser


def container_kind(command: str) -> ContainerKind:
    """SageMaker runs ``train`` as a training job, ``serve`` on an endpoint, the rest as processing jobs."""
    return {"train": TRAINING, "serve": SERVING}.get(command, PROCESSING_JOB)


def run_command(
    opt_ml: OptMl, command: str, run: Callable[[OptMl, argparse.Namespace], None], args: argparse.Namespace
) -> int:
    """The one error boundary: a user error is one line and exit 2, anything else a traceback and exit 1;
    both leave the reason where SageMaker reads it for this command's kind of job."""
    kind = container_kind(command)
    opt_ml.reserve_failure_space(kind)
    try:
        run(opt_ml, args)
    except UserError as exc:
        message = str(exc)
        log.error("%s", message)
        opt_ml.write_failure(kind, message)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        opt_ml.write_failure(kind, "interrupted (SIGINT)")
        return 130
    except Exception as exc:
        full = disk_full(exc, opt_ml)
        if full is not None:
            opt_ml.release_failure_space(kind)
            log.error("%s", full)
            opt_ml.write_failure(kind, full)
            return EXIT_USER_ERROR
        traceback.print_exc()
        opt_ml.write_failure(
            kind,
            f"internal error in `{command}`: {type(exc).__name__}: {exc}. "
            "This is a bug or an infrastructure problem, not a data or configuration error; the full "
            "traceback is in the job's log.",
        )
        return EXIT_INTERNAL_ERROR
    opt_ml.release_failure_space(kind)
    return 0


def disk_full(exc: BaseException, opt_ml: OptMl) -> str | None:
    """What ran out and where, when ``exc`` comes from a full disk; None otherwise."""
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and seen not in chain:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    by_errno = next((e for e in chain if isinstance(e, OSError) and e.errno in DISK_FULL), None)
    where = [Path(by_errno.filename)] if by_errno is not None and by_errno.filename else []
    where += [opt_ml.checkpoint_dir, opt_ml.model_dir, opt_ml.output_dir, opt_ml.root]
    usage = [(path, shutil.disk_usage(path).free) for path in where if path.exists()]
    nearly_full = [(path, free) for path, free in usage if free < NEARLY_FULL_BYTES]
    if by_errno is None and not nearly_full:
        return None
    path, free = (nearly_full or usage or [(opt_ml.root, 0)])[0]
    writing = f" while writing {by_errno.filename}" if by_errno is not None and by_errno.filename else ""
    return (
        f"no space left on the device{writing}: {free / 2**20:.0f} MiB free on the file system of {path}. "
        "Checkpoints saved before this one are intact. In SageMaker, give the job a bigger volume "
        "(pipeline.volume_size_gb) or keep fewer checkpoints; locally, free disk space. Then run again: "
        f"training resumes from the last complete checkpoint. ({type(exc).__name__}: {str(exc)[:200]})"
    )


def exit_on_broken_pipe() -> None:
    """Die on SIGPIPE, as command-line tools do. Python ignores SIGPIPE and turns it into
    BrokenPipeError, which logging swallows: a job whose reader is gone went on training at 99% CPU
    into a closed pipe. Its output is its log (CloudWatch in SageMaker), so with no reader it stops."""
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Only as the process's own entry (argv from the command line; in-process callers such as tests
    # keep their signal handling), and not for `serve`, whose sockets must not die by SIGPIPE.
    if argv is None and args.command != "serve":
        exit_on_broken_pipe()
    _setup_logging()
    return run_command(OptMl.from_env(), args.command, args.run, args)


if __name__ == "__main__":
    sys.exit(main())
