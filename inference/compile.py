"""`compile`: turn the merged model into what an endpoint serves, at static shapes.

* ``--target inf2`` / ``--target trn2``: optimum-neuron export for Inferentia 2 or Trainium 2 with static
  batch size, sequence length, tensor-parallel degree and dtype. NOT EXECUTED IN CI OR LOCALLY: it needs
  the Neuron SDK (host RAM and the compiler, no Neuron device). Kept small and import-guarded; the
  arguments, the environment, the artifact layout check and the error when the SDK is missing are tested.
  The two targets are different hardware: "Models compiled for trn2 (NeuronCore-v3) are not compatible
  with inf2 (NeuronCore-v2), and vice versa" (optimum-neuron v0.4.5 docs/source/guides/export_model.mdx
  L47), and ``optimum-cli neuron serve`` refuses an artifact compiled for another target than the
  instance it runs on (optimum/commands/neuron/serve.py L144-146).
* ``--target cpu``: packaging, not compilation. The merged model cast to the serving dtype plus
  ``serving_config.json`` with the same static limits, verified by loading it back and generating once.

Both write ``compile_report.json`` (target, static shapes, versions, duration). The serving settings
(``SM_ON_*`` for the vLLM Neuronx container) are derived from that report, and ``check_serving_env``
refuses a deployment whose settings disagree with what was compiled.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inference.serving_contract import (
    REPORT,
    SERVING_CONFIG,
    SM_ON_BATCH_SIZE,
    SM_ON_MODEL,
    SM_ON_SEQUENCE_LENGTH,
    SM_ON_TENSOR_PARALLEL_SIZE,
)
from training.errors import UserError
from training.neuron_sdk import EXPORT_SDK, check_model_family, neuron_sdk_available, read_model_config

log = logging.getLogger(__name__)

# What optimum-neuron 0.4.5 writes for a decoder export (NxD backend): the HF config, the compiled shapes,
# the traced graphs (model.pt) and the weights, sharded per tensor-parallel rank under
# checkpoint/weights/tp{rank}_sharded_checkpoint.safetensors (checked separately, one per rank).
INF2_REQUIRED_FILES = ("config.json", "neuron_config.json", "model.pt")
DTYPES = ("bfloat16", "float16", "float32")
# The Neuron targets, each named for the endpoint family it runs on, and the cpu packaging.
NEURON_TARGETS = ("inf2", "trn2")
TARGETS = (*NEURON_TARGETS, "cpu")
# What optimum-neuron 0.4.5 compiles each for: inf2, trn1 and trn1n share NeuronCore-v2 and so one
# compilation target, "trn1"; trn2 is its own (optimum/neuron/utils/instance.py L24-30,
# ``INSTANCE_VALUE_MAP``). The export writes it as ``target`` in neuron_config.json (models/inference/
# backend/config.py L71 ``target: str | None = None,  # set to "trn2" for trn2``).
PLATFORM_TARGET = {"inf2": "trn1", "trn2": "trn2"}
# optimum-neuron reads the compilation target from this variable. On a host without a Neuron device (our
# compile step's CPU instance) importing optimum.neuron sets it to "trn1" unless it is set already
# (optimum/neuron/__init__.py L26-32), and the export then refuses any other target: "The compilation
# target is {neuron_config.target} but the NEURON_PLATFORM_TARGET_OVERRIDE environment variable is set to
# {compilation_target}" (models/inference/backend/pretrained_model.py L331-337). optimum-cli sets it before
# exporting (optimum/commands/export/neuronx.py L344-346); so do we (``export_environment``).
PLATFORM_TARGET_ENV = "NEURON_PLATFORM_TARGET_OVERRIDE"


@dataclass(frozen=True)
class CompileSettings:
    target: str  # "inf2" | "trn2" | "cpu"
    batch_size: int = 4
    sequence_length: int = 512
    tensor_parallel_size: int = 2  # inf2.xlarge and inf2.8xlarge have 2 NeuronCores
    dtype: str = "bfloat16"
    max_new_tokens: int = 256  # cpu serving default/cap for one completion

    def check(self) -> None:
        problems = []
        if self.target not in TARGETS:
            problems.append(f"--target {self.target!r}: choose one of {', '.join(TARGETS)}")
        for key in ("batch_size", "sequence_length", "tensor_parallel_size", "max_new_tokens"):
            if getattr(self, key) <= 0:
                problems.append(f"--{key.replace('_', '-')}={getattr(self, key)}: must be > 0")
        if self.dtype not in DTYPES:
            problems.append(f"--dtype {self.dtype!r}: choose one of {', '.join(DTYPES)}")
        # The cap on one completion applies to the cpu server only (vLLM on Neuron takes max_tokens per request).
        if self.target not in NEURON_TARGETS and self.max_new_tokens >= self.sequence_length:
            problems.append(
                f"--max-new-tokens={self.max_new_tokens} must be smaller than --sequence-length={self.sequence_length}"
            )
        if problems:
            raise UserError("compile settings: " + "; ".join(problems))


def compile_model(
    model_dir: Path, output_dir: Path, settings: CompileSettings, archive: bool = False
) -> dict[str, Any]:
    settings.check()
    if output_dir.resolve() == model_dir.resolve():
        raise UserError(f"--output-dir must differ from --model-dir ({model_dir})")
    t0 = time.perf_counter()
    family = model_family(model_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if settings.target in NEURON_TARGETS:
        details = _compile_inf2(model_dir, output_dir, settings)
    else:
        details = _package_cpu(model_dir, output_dir, settings)
    from training.report import library_versions

    report = {
        "target": settings.target,
        "batch_size": settings.batch_size,
        "sequence_length": settings.sequence_length,
        "tensor_parallel_size": settings.tensor_parallel_size if settings.target in NEURON_TARGETS else None,
        "dtype": settings.dtype,
        "source_model": str(model_dir),
        "model_class": family,
        "versions": library_versions(),
        "provenance": provenance(model_dir),
        "duration_seconds": round(time.perf_counter() - t0, 2),
        **details,
    }
    # What the registered model package carries as its container environment (the pipeline reads these
    # with JsonGet), so the package cannot disagree with the artifact it points at. A cpu artifact gets
    # the same keys (one core, no tensor parallelism) so that the local executor registers the same
    # record; the vLLM Neuronx container is never given a cpu artifact (serve checks neuron_config.json).
    if settings.target in NEURON_TARGETS:
        report["serving_env"] = {k: v for k, v in serving_env(report).items() if k != SM_ON_MODEL}
    else:
        report["serving_env"] = {
            SM_ON_BATCH_SIZE: str(settings.batch_size),
            SM_ON_SEQUENCE_LENGTH: str(settings.sequence_length),
            SM_ON_TENSOR_PARALLEL_SIZE: "1",
        }
    (output_dir / REPORT).write_text(json.dumps(report, indent=2) + "\n")
    if archive:
        archive_artifact(output_dir)
    log.info("compile report: %s", output_dir / REPORT)
    return report


def model_family(model_dir: Path) -> str | None:
    """The model's class when its family is one the inf2 export takes (training/neuron_sdk.py), for both
    targets: the cpu package stands in for the inf2 export in local runs, and a rehearsal that passes where
    the cloud export would fail is worse than none. None where model_dir has no config.json (the loader
    then says what is wrong)."""
    config = read_model_config(model_dir)
    if config is None:
        return None
    return check_model_family(config, str(model_dir / "config.json"), "inference")


def provenance(model_dir: Path) -> dict[str, str]:
    """Where the artifact came from, as strings (model package metadata takes strings only): the MLflow
    run of the fine-tune (from its training_report.json) and the versions of the compiling stack."""
    from importlib import metadata

    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    run_id = None
    report = model_dir / "training_report.json"
    if report.is_file():
        try:
            run_id = json.loads(report.read_text()).get("mlflow_run_id")
        except (OSError, json.JSONDecodeError, AttributeError):
            log.warning("cannot read %s; the MLflow run id is recorded as unknown", report)
    return {
        "mlflow_run_id": str(run_id) if run_id else "none",
        "transformers": version("transformers"),
        "optimum_neuron": version("optimum-neuron"),
        "neuronx_cc": version("neuronx-cc"),
    }


def archive_artifact(output_dir: Path) -> Path:
    """Pack the artifact as ``model.tar.gz``, the way SageMaker hosting wants ModelDataUrl.

    The archive holds every file of the artifact (the compile report too, so ``serve`` can check the
    shapes at startup); only ``compile_report.json`` stays loose next to it for the pipeline's
    PropertyFile. The loose copies are removed so the artifact is uploaded once, not twice.
    """
    import tarfile

    target = output_dir / "model.tar.gz"
    members = sorted(p for p in output_dir.iterdir() if p.name != target.name)
    partial = target.with_suffix(".gz.partial")
    # compresslevel 1, not tarfile's default 9 (https://docs.python.org/3/library/tarfile.html#tarfile.open):
    # weights barely compress. On the demo's 269 MB of bf16 safetensors, level 1 took 10.6 s for 209.3 MB
    # and level 9 took 26.3 s for 206.7 MB (zlib, one core, 2026-11-29); an 8B is 60 times that.
    with tarfile.open(partial, "w:gz", compresslevel=1) as tar:
        for path in members:
            tar.add(path, arcname=path.name)
    partial.replace(target)
    for path in members:
        if path.name == REPORT:
            continue
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    log.info("artifact archived as %s (%.1f MB)", target, target.stat().st_size / 1e6)
    return target


# ---- cpu: packaging -----------------------------------------------------------------------------


def _package_cpu(model_dir: Path, output_dir: Path, settings: CompileSettings) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM

    from inference.generation import Shape, chat_prompt_ids, generate, load_for_inference
    from training.base_model import load_tokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, settings.dtype))
    tokenizer = load_tokenizer(str(model_dir))
    max_positions = getattr(model.config, "max_position_embeddings", None)
    if max_positions and settings.sequence_length > max_positions:
        raise UserError(
            f"--sequence-length={settings.sequence_length} exceeds the model's max_position_embeddings={max_positions}"
        )
    model.save_pretrained(output_dir, safe_serialization=True)
    tokenizer.save_pretrained(output_dir)
    for extra in ("training_report.json",):
        if (model_dir / extra).is_file():
            shutil.copy2(model_dir / extra, output_dir / extra)
    serving = {
        "target": "cpu",
        "dtype": settings.dtype,
        "limits": {
            "batch_size": settings.batch_size,
            "sequence_length": settings.sequence_length,
            "max_new_tokens": settings.max_new_tokens,
        },
    }
    (output_dir / SERVING_CONFIG).write_text(json.dumps(serving, indent=2) + "\n")

    # Verify: the packaged folder loads and generates at the static batch size.
    loaded, tok = load_for_inference(output_dir)
    prompt = chat_prompt_ids(tok, [{"role": "user", "content": "Say OK."}])
    out = generate(loaded, tok, [prompt], Shape(settings.batch_size, len(prompt), 8))
    log.info("verification generation: %r", out[0].text)
    return {
        "artifact": "transformers safetensors (packaged, not compiled)",
        "verification": {
            "prompt": "Say OK.",
            "output": out[0].text,
            "completion_tokens": out[0].completion_tokens,
        },
    }


# ---- inf2 / trn2: optimum-neuron export -------------------------------------------------------------
# The functions keep their inf2 names (tests/conftest.py stands in for ``_compile_inf2``); each serves both
# Neuron targets.


def inf2_export_kwargs(settings: CompileSettings) -> dict[str, Any]:
    """Keyword arguments of ``NeuronModelForCausalLM.get_neuron_config`` (optimum-neuron 0.4.5).

    In 0.4.5 ``export()`` takes no shapes: they go into a neuron config built by ``get_neuron_config``,
    and the dtype is the one on the transformers config passed alongside (see ``_compile_inf2``).
    ``instance_type`` is the target, one of optimum-neuron's ``SUPPORTED_INSTANCE_TYPES`` ("trn1", "inf2",
    "trn1n", "trn2"; optimum/neuron/utils/instance.py L24), normalised by ``get_neuron_config``
    (models/inference/modeling_utils.py L109-112); without it a CPU host compiles for trn1 (instance.py
    L85-91). On trn2 the export compiles at LNC=2, the only logical-core setting optimum-neuron 0.4.5 takes
    (models/inference/backend/config.py L156-158: ``return 2 if self.target == "trn2" else 1``). The same
    export from a shell: ``optimum-cli export neuron --model M --instance_type trn2 --batch_size B
    --sequence_length S --tensor_parallel_size TP OUT`` (docs/source/guides/export_model.mdx L113: "You can
    also compile the model on a CPU-only instance. In this case, specify the target instance type by passing
    `--instance_type` from `{inf2, trn1, trn1n, trn2}`.").
    """
    if settings.target not in NEURON_TARGETS:
        raise ValueError(f"no Neuron export for target {settings.target!r}")
    return {
        "instance_type": settings.target,
        "batch_size": settings.batch_size,
        "sequence_length": settings.sequence_length,
        "tensor_parallel_size": settings.tensor_parallel_size,
    }


def export_environment(settings: CompileSettings) -> dict[str, str]:
    """What the export's process environment must hold before optimum.neuron is imported
    (``PLATFORM_TARGET_ENV``): the compilation target, so a CPU host compiles for trn2 when asked."""
    return {PLATFORM_TARGET_ENV: PLATFORM_TARGET[settings.target]}


def check_inf2_artifact(folder: Path, settings: CompileSettings) -> dict[str, Any]:
    """The exported folder has what the vLLM Neuronx container loads, at the shapes and for the target we
    asked for (``target`` in neuron_config.json, where the export wrote one)."""
    missing = [name for name in INF2_REQUIRED_FILES if not (folder / name).is_file()]
    missing += [
        f"checkpoint/weights/tp{rank}_sharded_checkpoint.safetensors"
        for rank in range(settings.tensor_parallel_size)
        if not (folder / "checkpoint" / "weights" / f"tp{rank}_sharded_checkpoint.safetensors").is_file()
    ]
    if missing:
        raise RuntimeError(
            f"the Neuron export in {folder} lacks {', '.join(missing)}; the export did not complete"
        )
    neuron_config = json.loads((folder / "neuron_config.json").read_text())
    compiled = compiled_shapes(neuron_config)
    wanted = {
        "batch_size": settings.batch_size,
        "sequence_length": settings.sequence_length,
        "tensor_parallel_size": settings.tensor_parallel_size,
    }
    differ: dict[str, tuple[Any, Any]] = {
        k: (compiled.get(k), v) for k, v in wanted.items() if compiled.get(k) != v
    }
    platform = PLATFORM_TARGET.get(settings.target)
    if "target" in neuron_config and neuron_config["target"] != platform:
        differ["target"] = (neuron_config["target"], platform)
    if differ:
        raise RuntimeError(
            f"the Neuron export in {folder} has other shapes or target than requested: {differ}"
        )
    return compiled


def compiled_shapes(neuron_config: dict[str, Any]) -> dict[str, Any]:
    """batch_size / sequence_length / tensor_parallel_size from a neuron_config.json."""
    aliases = {
        "batch_size": ("batch_size",),
        "sequence_length": ("sequence_length", "seq_len"),
        "tensor_parallel_size": ("tp_degree", "tensor_parallel_size"),
    }
    out = {}
    for key, names in aliases.items():
        for name in names:
            if name in neuron_config:
                out[key] = neuron_config[name]
                break
    return out


def _compile_inf2(
    model_dir: Path, output_dir: Path, settings: CompileSettings
) -> dict[str, Any]:  # pragma: no cover
    # Never executed here (no Neuron SDK); the arguments and the artifact check around it are tested.
    if not neuron_sdk_available(EXPORT_SDK):
        raise UserError(
            f"--target {settings.target} needs the Neuron SDK (optimum-neuron with neuronx-distributed), which is not installed "
            "here; run `compile` in the training image (containers/Dockerfile.train) on a memory-rich CPU or trn1 "
            "instance, or use --target cpu for a local deployable artifact"
        )
    import os
    import sys

    if (
        "optimum.neuron" in sys.modules
        and os.environ.get(PLATFORM_TARGET_ENV) != PLATFORM_TARGET[settings.target]
    ):
        raise UserError(
            f"optimum.neuron was imported in this process before the compilation target was set "
            f"({PLATFORM_TARGET_ENV}={os.environ.get(PLATFORM_TARGET_ENV)!r}); run `compile --target "
            f"{settings.target}` in a fresh process"
        )
    os.environ.update(export_environment(settings))
    import torch
    from optimum.neuron import NeuronModelForCausalLM
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_dir)
    config.dtype = getattr(torch, settings.dtype)  # the compiled weights' dtype comes from the config
    neuron_config = NeuronModelForCausalLM.get_neuron_config(
        str(model_dir), config=config, **inf2_export_kwargs(settings)
    )
    log.info(
        "exporting %s for %s with %s, dtype %s (a multi-minute compile)",
        model_dir,
        settings.target,
        inf2_export_kwargs(settings),
        settings.dtype,
    )
    model = NeuronModelForCausalLM.export(
        str(model_dir), neuron_config=neuron_config, config=config, load_weights=False
    )
    model.save_pretrained(output_dir)
    from training.base_model import load_tokenizer

    load_tokenizer(str(model_dir)).save_pretrained(output_dir)
    return {"artifact": "optimum-neuron export", "compiled": check_inf2_artifact(output_dir, settings)}


# ---- serving settings derived from the report -------------------------------------------------------


def serving_env(report: dict[str, Any], model_path: str = "/opt/ml/model") -> dict[str, str]:
    """Environment for the HF vLLM Neuronx container, from a compile report of a Neuron target."""
    if report.get("target") not in NEURON_TARGETS:
        raise UserError(
            "serving on Neuron needs a compile report with target="
            + " or ".join(NEURON_TARGETS)
            + f", got target={report.get('target')!r}"
        )
    return {
        SM_ON_MODEL: model_path,
        SM_ON_BATCH_SIZE: str(report["batch_size"]),
        SM_ON_SEQUENCE_LENGTH: str(report["sequence_length"]),
        SM_ON_TENSOR_PARALLEL_SIZE: str(report["tensor_parallel_size"]),
    }


def check_serving_env(env: dict[str, str], report: dict[str, Any]) -> None:
    """Refuse a deployment whose SM_ON_* settings disagree with the compiled shapes (the container
    would fail at startup, after the endpoint had already been created)."""
    expected = serving_env(report)
    problems = [
        f"{key}={env.get(key)!r} but the model was compiled with {value}"
        for key, value in expected.items()
        if key != SM_ON_MODEL and env.get(key) != value
    ]
    if problems:
        raise UserError(
            "serving settings disagree with compile_report.json: "
            + "; ".join(problems)
            + ". Derive them with inference.compile.serving_env, or recompile with the shapes you want"
        )
