"""Batched greedy/sampled generation with transformers at fixed shapes, shared by `evaluate` and `serve`.

Every prefill has the shape ``[batch_size, prompt_length]``: prompts are left-padded to
``prompt_length`` and a short batch is filled with copies of its first prompt whose outputs are
dropped. That mirrors what a compiled Neuron model requires (static batch and sequence length) and
keeps CPU timings comparable across batches.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.cpu_precision import cpu_bf16_is_fast

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Shape:
    batch_size: int
    prompt_length: int
    max_new_tokens: int


@dataclass
class Generated:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (EOS) or "length"


class StableText:
    """Incremental detokenization for streaming: the text of the tokens so far, released only once stable.

    A token can end in the middle of a multi-byte character (byte-level BPE splits UTF-8 anywhere); its
    decoded text then ends in U+FFFD until the next token completes the character, so a trailing U+FFFD
    is held back. Text is released only when the decoded whole still starts with what was sent, so the
    deltas joined equal the final ``decode`` of all tokens (``rest`` sends what is left at the end).
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.sent = ""

    def delta(self, tokens: list[int]) -> str:
        text = self.tokenizer.decode(tokens, skip_special_tokens=True).rstrip("\ufffd")
        if len(text) <= len(self.sent) or not text.startswith(self.sent):
            return ""
        piece, self.sent = text[len(self.sent) :], text
        return piece

    def rest(self, final: str) -> str:
        """What ``final`` (the decode of every token) adds to the text already sent."""
        if not final.startswith(self.sent):
            # Cannot happen with a prefix-stable decode; say so rather than send text that disagrees.
            log.warning("streamed text %r is not a prefix of the final text %r", self.sent, final)
            return ""
        piece, self.sent = final[len(self.sent) :], final
        return piece


def pick_device() -> Any:
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_for_inference(
    model_dir: Path | str, gguf_file: str | None = None, dtype: str = "auto"
) -> tuple[Any, Any]:
    """(model in eval mode on the best device, tokenizer set up for left padding)."""
    import torch
    from transformers import AutoModelForCausalLM

    from training.base_model import load_tokenizer

    tokenizer = load_tokenizer(str(model_dir), gguf_file)
    tokenizer.padding_side = "left"
    device = pick_device()
    # "auto" keeps the saved dtype (bf16 for our merged models), except on a CPU that multiplies bf16
    # slower than fp32 (no AVX512-BF16/AMX: tens of times slower), where fp32 is used instead.
    torch_dtype: Any = "auto" if dtype == "auto" else getattr(torch, dtype)
    upcast = dtype == "auto" and device.type == "cpu" and not cpu_bf16_is_fast()
    if upcast:
        torch_dtype = torch.float32
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), gguf_file=gguf_file, dtype=torch_dtype)
    model.to(device).eval()
    if upcast and gguf_file is None:
        _pack_for_few_rows(model, model_dir, device)
    return model, tokenizer


def _pack_for_few_rows(model: Any, model_dir: Path | str, device: Any) -> None:
    """A bf16/fp16 checkpoint upcast to fp32 on CPU: prepack its linear layers for decoding (see
    inference/packed_linear.py, which also says why no weight changes)."""
    from transformers import AutoConfig

    from inference.packed_linear import pack_linear_layers, packing_unavailable

    saved = AutoConfig.from_pretrained(str(model_dir)).dtype
    why_not = packing_unavailable(saved, next(model.parameters()).dtype, device)
    if why_not is not None:
        log.info("linear layers not packed for few-row decoding: %s", why_not)
        return
    packed, kept = pack_linear_layers(model)
    log.info("packed %d linear layers (fp16 weights, fp32 math) for few-row decoding", packed)
    if kept:
        log.warning(
            "%d linear layer(s) left in fp32: fp16 would move their weights (%s%s); config.json says %s",
            len(kept),
            ", ".join(kept[:3]),
            ", ..." if len(kept) > 3 else "",
            saved,
        )


def chat_prompt_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of a conversation rendered with the chat template, ending with the assistant cue."""
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    return list(ids["input_ids"] if isinstance(ids, dict) else ids)


def generate(
    model: Any,
    tokenizer: Any,
    prompts: list[list[int]],
    shape: Shape,
    max_new_tokens: list[int] | None = None,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int | None = None,
    fill_batch: bool = True,
) -> list[Generated]:
    """Generate for ``prompts`` in batches of exactly ``shape.batch_size`` x ``shape.prompt_length``.

    ``max_new_tokens`` per prompt (default ``shape.max_new_tokens``): the batch runs to the largest
    and each output is cut to its own limit. ``temperature == 0`` is greedy. ``fill_batch=False``
    lets a short batch stay short (no compiled shape to honour, no wasted rows). The server does not
    come here: it batches continuously (inference/batching.py).
    """
    import torch

    limits = max_new_tokens or [shape.max_new_tokens] * len(prompts)
    too_long = [i for i, p in enumerate(prompts) if len(p) > shape.prompt_length]
    if too_long:
        raise ValueError(f"prompts {too_long[:5]} exceed prompt_length={shape.prompt_length}")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos_id = tokenizer.eos_token_id
    device = next(model.parameters()).device
    out: list[Generated] = []
    for start in range(0, len(prompts), shape.batch_size):
        chunk = prompts[start : start + shape.batch_size]
        chunk_limits = limits[start : start + shape.batch_size]
        filled = chunk + [chunk[0]] * (shape.batch_size - len(chunk)) if fill_batch else chunk
        ids = torch.full((len(filled), shape.prompt_length), pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, prompt in enumerate(filled):
            ids[row, shape.prompt_length - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
            mask[row, shape.prompt_length - len(prompt) :] = 1
        sampling = (
            {"do_sample": True, "temperature": temperature, "top_p": top_p}
            if temperature > 0
            else {"do_sample": False}
        )
        if seed is not None:
            torch.manual_seed(seed)
        with torch.no_grad():
            result = model.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                max_new_tokens=max(chunk_limits),
                eos_token_id=eos_id,
                pad_token_id=pad_id,
                # Explicit so a model's generation_config cannot turn sampling on behind our back.
                top_k=None,
                **({"top_p": None, "temperature": None} if temperature == 0 else {}),
                **sampling,
            )
        new = result[:, shape.prompt_length :].tolist()
        for row, prompt in enumerate(chunk):
            tokens = new[row][: chunk_limits[row]]
            finish = "length"
            if eos_id in tokens:
                tokens = tokens[: tokens.index(eos_id)]
                finish = "stop"
            out.append(
                Generated(
                    text=tokenizer.decode(tokens, skip_special_tokens=True),
                    prompt_tokens=len(prompt),
                    completion_tokens=len(tokens) + (1 if finish == "stop" else 0),
                    finish_reason=finish,
                )
            )
    return out
