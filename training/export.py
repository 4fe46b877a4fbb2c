"""Write the fine-tune's deliverables into the model dir: the LoRA adapter, and the adapter merged into
the base as plain Hugging Face safetensors plus tokenizer (what evaluation and Neuron compilation load).

Both backends end here. The torch backend merges the PEFT model it trained in memory; the Neuron
backend consolidates its tensor-parallel adapter shards into one adapter folder first and merges that
into a freshly loaded base on CPU (``merge_adapter_folder``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def save_merged(
    peft_model: Any, tokenizer: Any, model_dir: Path, save_dtype: str, save_adapter: bool = True
) -> None:
    """Save ``model_dir/adapter`` (unless it is already there) and the merged model + tokenizer at ``model_dir``."""
    import torch

    model_dir.mkdir(parents=True, exist_ok=True)
    if save_adapter:
        peft_model.save_pretrained(model_dir / "adapter")
    merged = peft_model.merge_and_unload()
    merged.to(getattr(torch, save_dtype))
    # Training ran with use_cache=False (packed blocks); inference wants the cache back.
    merged.config.use_cache = True
    if merged.generation_config is not None:
        # Stop generation on the tokenizer's (fixed-up) EOS, not whatever the source config said.
        merged.generation_config.eos_token_id = tokenizer.eos_token_id
        merged.generation_config.pad_token_id = tokenizer.pad_token_id
    merged.save_pretrained(model_dir, safe_serialization=True)
    tokenizer.save_pretrained(model_dir)


def merge_adapter_folder(
    base_source: str, adapter_dir: Path, tokenizer: Any, model_dir: Path, save_dtype: str
) -> None:
    """Load the base on CPU in fp32, apply the adapter at ``adapter_dir`` and save merged + tokenizer.

    fp32 for the merge so the low-rank update is added at full precision before the final cast.
    """
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    if not (adapter_dir / "adapter_config.json").is_file():
        raise FileNotFoundError(
            f"no adapter_config.json in {adapter_dir}: the adapter was not saved completely"
        )
    base = AutoModelForCausalLM.from_pretrained(base_source, dtype=torch.float32)
    peft_model = PeftModel.from_pretrained(base, adapter_dir)
    log.info("merging adapter %s into %s", adapter_dir, base_source)
    save_merged(
        peft_model,
        tokenizer,
        model_dir,
        save_dtype,
        save_adapter=adapter_dir.resolve() != (model_dir / "adapter").resolve(),
    )
