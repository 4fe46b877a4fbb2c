"""`serve` for a compiled Neuron artifact: hand over to the server the vLLM Neuronx DLC ships.

THIS PATH CANNOT RUN ON OUR MACHINES: there is no Neuron hardware or SDK here, no vLLM and no
optimum-neuron. It is tested at its edges only (the command and environment built from an artifact
folder, the refusals, the exec call), never by starting the server. Nothing Neuron is imported here.

When ``<model dir>/neuron_config.json`` exists (the output of ``compile --target inf2`` or ``--target
trn2``), ``serve`` execs the same command the base image of containers/Dockerfile.inference would have run, configured
the same way, so the endpoint behaves as if the DLC's own entrypoint had started it.

How that DLC starts its server (sources read for this module):

* huggingface/optimum-neuron, tag v0.4.5, ``docker/vllm/Dockerfile``: the image's ``entrypoint.sh``
  starts from ``ARGS=(--port 8080)``, turns every ``SM_ON_<NAME>=<value>`` into ``--<name> <value>``
  (prefix removed, lower-cased, underscores kept; an empty value gives the bare flag), and runs
  ``exec optimum-cli neuron serve "${ARGS[@]}" <container args>``. It does not read
  ``SAGEMAKER_BIND_TO_PORT``; ``SM_ON_PORT`` would add a second ``--port``. The image tag we build on,
  ``0.11.0-optimum0.4.5-neuronx-py310-sdk2.26.1``, is listed in aws/deep-learning-containers
  ``docs/src/data/huggingface-vllm-inference-neuronx/0.11-neuronx-sdk2.26.1.yml``; that repository
  holds no Dockerfile for it, and optimum-neuron's Dockerfile sets
  ``HF_HUB_USER_AGENT_ORIGIN=aws:sagemaker:neuron:inference:vllm-optimum-neuron``.
* huggingface/optimum-neuron v0.4.5 ``optimum/commands/neuron/serve.py``: ``optimum-cli neuron serve``
  takes ``--model``, ``--served_model_name``, ``--task``, ``--batch_size``, ``--sequence_length``,
  ``--tensor_parallel_size``, ``--port`` (default 8080), ``--allow_non_cached_model``, and passes any
  other flag to vLLM. For a folder with a ``neuron_config.json`` it raises ``ValueError`` when a given
  batch size / sequence length / tensor-parallel size differs from the compiled one (at startup, after
  the endpoint exists; hence the check here first), then runs vLLM's OpenAI server
  (``vllm.entrypoints.openai.api_server.run_server``) with ``--max-num-seqs <batch_size>``,
  ``--max-model-len <sequence_length>``, ``--tensor-parallel-size``, ``--dtype`` from config.json.
  The documented SM_ON_* set (v0.4.5 ``docs/source/guides/export_model.mdx``): SM_ON_MODEL,
  SM_ON_BATCH_SIZE, SM_ON_SEQUENCE_LENGTH, SM_ON_TENSOR_PARALLEL_SIZE. It also refuses an artifact
  compiled for another target than the instance it runs on (L131 ``current_instance_type()``, L144-146:
  "The neuron model is compiled for {neuron_config.target} and cannot run on a {instance_type}
  instance"), so a trn2 artifact starts on trn2 and an inf2 one on inf2 (the deployer checks the pair
  before it creates the endpoint: infra/deploy/runtime/service_rules.py).
* trn2: the same image and command serve there. optimum-neuron v0.4.5's own benchmarks run this server on
  trn2.48xlarge (benchmark/vllm/single-instance/llama-3.1-8b-trn2/.env: Llama-3.1-8B-Instruct, TP 4,
  batch 32, 4096 tokens, through ``optimum-cli neuron serve``, serve.sh; data-parallel/llama3-70B-trn2/
  docker-compose.yaml: the optimum-neuron-vllm image configured by the same SM_ON_*), although its vLLM
  plugin guide still says "Trn2 instances are not supported by the `optimum-neuron` platform yet."
  (docs/source/guides/vllm_plugin.mdx L22, written 2025-07-10, before those benchmarks of 2025-10). The
  planner says so beside every trn2 endpoint (config/plan.py, ``TRN2_SERVING_NOTE``).
* ``GET|POST /ping`` and ``POST /invocations`` are vLLM's own routes (``api_server.py``: ``/ping`` calls
  the health check; ``/invocations`` validates the JSON body against ChatCompletionRequest, then
  CompletionRequest, ... and dispatches to that handler), so OpenAI chat bodies sent to /invocations
  work as they do with our CPU server.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from inference.compile import check_serving_env, compiled_shapes, serving_env
from inference.serving_contract import REPORT, SHAPE_KEYS, SM_ON_MODEL, SM_ON_PREFIX
from training.errors import UserError

log = logging.getLogger(__name__)

NEURON_CONFIG = "neuron_config.json"
LAUNCHER = ("optimum-cli", "neuron", "serve")
SHAPES = ("batch_size", "sequence_length", "tensor_parallel_size")


def is_neuron_artifact(model_dir: Path) -> bool:
    """True for the output of ``compile --target inf2|trn2`` (an optimum-neuron export)."""
    return (model_dir / NEURON_CONFIG).is_file()


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read {path}: {exc}; recompile with `compile --target inf2|trn2`") from exc
    if not isinstance(data, dict):
        raise UserError(f"{path} is not a JSON object; recompile with `compile --target inf2|trn2`")
    return data


def compiled_report(model_dir: Path) -> tuple[dict[str, Any], str]:
    """The compile report the serving settings derive from, and which file it came from.

    ``neuron_config.json`` holds the shapes the server will check; ``compile_report.json`` (written by
    ``compile``) must agree with it. Without a report, the shapes come from neuron_config.json alone.
    """
    if not is_neuron_artifact(model_dir):
        raise UserError(
            f"{model_dir} has no {NEURON_CONFIG}: it is not a compiled Neuron artifact "
            "(the output of `compile --target inf2|trn2`)"
        )
    neuron_config = _read_json(model_dir / NEURON_CONFIG)
    shapes = compiled_shapes(neuron_config)
    missing = [key for key in SHAPES if key not in shapes]
    if missing:
        raise UserError(
            f"{model_dir / NEURON_CONFIG} lacks {', '.join(missing)} (expected batch_size, "
            "sequence_length, tp_degree); recompile with `compile --target inf2|trn2`"
        )
    if not (model_dir / REPORT).is_file():
        # neuron_config.json names optimum-neuron's compilation target: "trn2", or "trn1" for inf2
        # (inference/compile.py PLATFORM_TARGET); an export without one is the default, trn1.
        target = "trn2" if neuron_config.get("target") == "trn2" else "inf2"
        return {"target": target, **shapes}, NEURON_CONFIG
    report = _read_json(model_dir / REPORT)
    differ = [
        f"{key}: {REPORT} says {report.get(key)!r}, {NEURON_CONFIG} says {shapes[key]!r}"
        for key in SHAPES
        if report.get(key) != shapes[key]
    ]
    if differ:
        raise UserError(
            f"{model_dir} is inconsistent ({'; '.join(differ)}); the report belongs to another "
            "compile. Recompile with `compile --target inf2|trn2` into an empty folder"
        )
    return report, REPORT


def neuron_launch(
    model_dir: Path,
    port: int,
    env: Mapping[str, str],
    served_model_name: str | None = None,
    extra_args: Sequence[str] = (),
) -> tuple[list[str], dict[str, str]]:
    """argv and environment that start the DLC's server for the artifact in ``model_dir`` on ``port``.

    Pure: reads the artifact, writes nothing. ``env`` is the current environment: SM_ON_* set there
    stand, the shape ones only where they equal the compiled shapes (``UserError`` otherwise); the
    missing ones are derived from the artifact by ``inference.compile.serving_env``. ``SM_ON_MODEL``
    is always ``model_dir``. ``port`` is SageMaker's (8080, or ``SAGEMAKER_BIND_TO_PORT``).
    ``served_model_name`` fills ``SM_ON_SERVED_MODEL_NAME`` unless that is set; ``extra_args`` go last,
    like the arguments given to the DLC's container.
    """
    if not 0 < port < 65536:
        raise UserError(f"port {port} is not a TCP port (1-65535)")
    report, source = compiled_report(model_dir)
    model_path = os.path.abspath(model_dir)
    derived = serving_env(report, model_path=model_path)

    out = dict(env)
    if out.get(SM_ON_MODEL) not in (None, model_path):
        log.warning("SM_ON_MODEL=%r replaced by the artifact being served, %s", out[SM_ON_MODEL], model_path)
    out[SM_ON_MODEL] = model_path
    for key in SHAPE_KEYS:
        out.setdefault(key, derived[key])
    if served_model_name and "SM_ON_SERVED_MODEL_NAME" not in out:
        out["SM_ON_SERVED_MODEL_NAME"] = served_model_name
    try:
        check_serving_env(out, report)
    except UserError as exc:
        raise UserError(
            f"cannot serve {model_dir} (compiled shapes read from {source}): {exc}. On the endpoint, unset "
            "the variable (serve derives it from the artifact) or set it to the compiled value"
        ) from exc
    if out.get("SM_ON_PORT") not in (None, str(port)):
        raise UserError(
            f"SM_ON_PORT={out['SM_ON_PORT']!r} but this container must listen on {port} (8080, or "
            "SAGEMAKER_BIND_TO_PORT, where SageMaker sends /ping and /invocations); unset SM_ON_PORT"
        )

    # The DLC's entrypoint.sh: SM_ON_<NAME>=<value> -> --<name> <value> (lower-cased, underscores kept).
    argv = [*LAUNCHER, "--port", str(port)]
    ordered = [SM_ON_MODEL, *SHAPE_KEYS]
    rest = sorted(
        k
        for k in out
        if k.startswith(SM_ON_PREFIX) and k not in ordered and k not in ("SM_ON_PORT", SM_ON_PREFIX)
    )
    for key in [*ordered, *rest]:
        argv.append("--" + key[len(SM_ON_PREFIX) :].lower())
        if out[key]:
            argv.append(out[key])
    argv.extend(extra_args)
    return argv, out


def missing_launcher(env: Mapping[str, str]) -> list[str]:
    """What the handover needs and this machine lacks (empty inside the vLLM Neuronx DLC)."""
    missing = []
    if shutil.which(LAUNCHER[0], path=env.get("PATH")) is None:
        missing.append(f"`{LAUNCHER[0]}` on PATH")
    if importlib.util.find_spec("vllm") is None:
        missing.append("vllm")
    # find_spec of a submodule imports its parent package; `optimum` itself is light.
    if importlib.util.find_spec("optimum") is None or importlib.util.find_spec("optimum.neuron") is None:
        missing.append("optimum-neuron")
    return missing


def exec_neuron_server(
    model_dir: Path,
    port: int,
    env: Mapping[str, str] | None = None,
    served_model_name: str | None = None,
    extra_args: Sequence[str] = (),
) -> NoReturn:
    """Replace this process with the DLC's server (signals, SIGTERM included, go straight to it)."""
    argv, child_env = neuron_launch(
        model_dir, port, os.environ if env is None else env, served_model_name, extra_args
    )
    missing = missing_launcher(child_env)
    if missing:
        raise UserError(
            f"{model_dir} is a compiled Neuron artifact; serving it needs the Hugging Face vLLM Neuronx container "
            f"(optimum-cli with optimum-neuron and vLLM), and this machine lacks {', '.join(missing)}. Run `serve` in "
            "the image built from containers/Dockerfile.inference on an ml.inf2 (or, for a trn2 artifact, "
            "ml.trn2) endpoint, or compile with "
            "`--target cpu` and serve that folder here"
        )
    log.info("handing over to the vLLM Neuronx server: %s", " ".join(argv))
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe(argv[0], argv, child_env)
