"""The one container entrypoint: ``python -m containers.entrypoint <command>``.

SageMaker runs training images as ``<image> train``; the same command runs on a laptop with
``MLOPS_OPT_ML`` pointing at a local folder laid out like ``/opt/ml``.

Commands available now: ``train``. ``prepare``, ``evaluate``, ``compile`` and ``serve`` arrive with
later issues and are deliberately absent rather than stubbed.

Exit codes: 0 success, 2 a user error (bad data, bad hyperparameters; no traceback), 1 anything
else (a bug or an infrastructure failure; traceback kept). Both failures write the reason to
``/opt/ml/output/failure``, which SageMaker shows as the job's failure reason.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback

from containers.opt_ml import OptMl
from training.errors import UserError

log = logging.getLogger("entrypoint")

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1


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


def run_train(opt_ml: OptMl, neuron_worker: bool = False) -> None:
    from training.backends import choose_backend, get_runner, neuron_devices_present
    from training.base_model import resolve_base_model
    from training.hyperparameters import parse_sagemaker_hyperparameters
    from training.job import TrainJob

    hp = parse_sagemaker_hyperparameters(opt_ml.read_hyperparameters(), str(opt_ml.hyperparameters_file))
    train_path = opt_ml.channel("train")
    if not train_path.exists():
        raise UserError(
            f"the required `train` channel is missing (expected data at {train_path}); "
            "give the training job a `train` input channel with JSONL files"
        )
    validation = opt_ml.channel("validation")
    source, gguf = resolve_base_model(opt_ml.channel("model"), hp.base_model)
    job = TrainJob(
        hp=hp,
        train_path=train_path,
        validation_path=validation if validation.exists() else None,
        model_source=source,
        gguf_file=gguf,
        model_dir=opt_ml.model_dir,
        checkpoint_dir=opt_ml.checkpoint_dir,
        run_name=os.environ.get("TRAINING_JOB_NAME", "finetune"),
        failure_file=opt_ml.failure_file,
    )

    from training.backends.neuron_backend import neuron_sdk_available

    backend = choose_backend(hp.backend, neuron_sdk_available(), neuron_devices_present())
    if neuron_worker:
        from training.backends.neuron_backend import run_worker

        run_worker(job)
        return
    log.info("backend=%s base_model=%s max_steps=%d", backend, source, hp.max_steps)
    get_runner(backend)(job)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="containers.entrypoint", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train = commands.add_parser("train", help="LoRA fine-tune following the SageMaker training contract")
    # Internal: the per-process body torchrun starts on Trainium.
    train.add_argument("--neuron-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    _setup_logging()
    opt_ml = OptMl.from_env()
    try:
        if args.command == "train":
            run_train(opt_ml, neuron_worker=args.neuron_worker)
    except UserError as exc:
        message = str(exc)
        log.error("%s", message)
        opt_ml.write_failure(message)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        opt_ml.write_failure("interrupted (SIGINT)")
        return 130
    except Exception as exc:
        traceback.print_exc()
        opt_ml.write_failure(
            f"internal error in `{args.command}`: {type(exc).__name__}: {exc}. "
            "This is a bug or an infrastructure problem, not a data or configuration error; the full "
            "traceback is in the job's log."
        )
        return EXIT_INTERNAL_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
