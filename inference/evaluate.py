"""`evaluate`: how good is the fine-tuned model on held-out data, and is it better than its base?

Metrics per model: ``eval_loss`` (mean loss per assistant token, packed blocks at one shape),
``perplexity`` (exp of it) and ``exact_match`` (batched greedy generation at one shape; the answer
must equal the last assistant turn after trimming whitespace; a reasoning block before it is not part
of the answer, see ``answer_text``). With a base model, the same metrics
prefixed ``base_`` and the improvements. Output: ``evaluation.json`` in the pipeline's format,
``{"metrics": {"<name>": {"value": float}}, ...}``, read by the quality gate.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from inference.generation import Shape, chat_prompt_ids, generate, load_for_inference
from training.errors import UserError

log = logging.getLogger(__name__)

# A reply's opening reasoning block: <think>, the shortest text up to the first </think>, and the
# whitespace around it.
LEADING_REASONING = re.compile(r"^\s*<think>.*?</think>\s*", re.DOTALL)


@dataclass(frozen=True)
class EvalSettings:
    batch_size: int = 16
    max_new_tokens: int = 32
    max_seq_length: int = 256  # block length for the loss pass
    prompt_length: int | None = None  # one fixed prefill length; None: the longest prompt, rounded up to 16
    max_samples: int = 20  # predictions kept in evaluation.json for reading

    def check(self) -> None:
        problems = [
            f"{k}={v}: must be > 0"
            for k, v in asdict(self).items()
            if isinstance(v, int) and not isinstance(v, bool) and v <= 0
        ]
        if problems:
            raise UserError("evaluation settings: " + "; ".join(problems))


def exact_match_cases(examples: list[dict[str, Any]]) -> list[tuple[list[dict[str, str]], str, str]]:
    """(conversation before the last assistant turn, expected answer, source) per example."""
    cases = []
    for ex in examples:
        if ex["messages"] is None:
            cases.append(([{"role": "user", "content": ex["prompt"]}], ex["completion"], ex["source"]))
            continue
        messages = ex["messages"]
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        cases.append((messages[:last], messages[last]["content"], ex["source"]))
    return cases


def answer_text(text: str) -> str:
    """The answer in a reply: what follows a reasoning block the reply opens with, whitespace trimmed.

    Qwen3's chat template renders the last assistant turn as ``<think>\n\n</think>\n\n`` + answer (its
    ``enable_thinking`` switch, Qwen/Qwen3-0.6B tokenizer_config.json ``chat_template``), so a Qwen3 model
    fine-tuned on our data replies with that empty block first, and ``<think>`` is no special token that
    decoding drops. Only a block at the start is reasoning: a ``</think>`` later in the reply is part of
    the answer, and scoring what follows it would credit a wrong answer with a right tail. A reply
    without the block (Llama, ChatML) is unchanged but for the trim."""
    return LEADING_REASONING.sub("", text, count=1).strip()


def _round_up(n: int, multiple: int = 16) -> int:
    return -(-n // multiple) * multiple


def evaluate_one(
    model_source: str, gguf_file: str | None, data_path: Path, settings: EvalSettings
) -> dict[str, Any]:
    import torch

    from training.data import load_examples
    from training.loss import mean_token_loss
    from training.prepare import prepare_channel

    t0 = time.perf_counter()
    model, tokenizer = load_for_inference(model_source, gguf_file)
    device = next(model.parameters()).device
    prepared = prepare_channel(
        tokenizer,
        data_path,
        channel="evaluation",
        max_seq_length=settings.max_seq_length,
        overlong="reject",
        skip_invalid_lines=False,
    )
    amp = torch.bfloat16 if model.dtype == torch.bfloat16 else None
    loss, targets = mean_token_loss(model, prepared.blocks, settings.batch_size, device, amp)

    # The same line limit as prepare_channel above: memory bounded by max_seq_length, not the input.
    loaded = load_examples(data_path, channel="evaluation", max_seq_length=settings.max_seq_length)
    cases = exact_match_cases(loaded.examples)
    prompts = [chat_prompt_ids(tokenizer, messages) for messages, _, _ in cases]
    longest = max(len(p) for p in prompts)
    prompt_length = settings.prompt_length or _round_up(longest)
    if longest > prompt_length:
        raise UserError(
            f"evaluation data has a prompt of {longest} tokens, longer than prompt_length={prompt_length}; "
            "raise --prompt-length or shorten the prompt"
        )
    shape = Shape(settings.batch_size, prompt_length, settings.max_new_tokens)
    outputs = generate(model, tokenizer, prompts, shape)
    hits = [
        answer_text(o.text) == answer_text(expected)
        for o, (_, expected, _) in zip(outputs, cases, strict=True)
    ]
    samples = [
        {"source": src, "expected": expected, "predicted": o.text, "correct": hit}
        for o, (_, expected, src), hit in list(zip(outputs, cases, hits, strict=True))[: settings.max_samples]
    ]
    return {
        "eval_loss": loss,
        "perplexity": math.exp(min(loss, 50.0)),
        "exact_match": sum(hits) / len(hits),
        "examples": len(cases),
        "target_tokens": targets,
        "generation_shape": asdict(shape),
        "seconds": round(time.perf_counter() - t0, 2),
        "samples": samples,
    }


def evaluate(
    model_source: str,
    data_path: Path,
    settings: EvalSettings,
    base: tuple[str, str | None] | None = None,
) -> dict[str, Any]:
    """The evaluation.json document."""
    settings.check()
    tuned = evaluate_one(model_source, None, data_path, settings)
    metrics = {name: {"value": float(tuned[name])} for name in ("eval_loss", "perplexity", "exact_match")}
    report: dict[str, Any] = {
        "metrics": metrics,
        "model": model_source,
        "data": str(data_path),
        "settings": asdict(settings),
        "details": {"model": tuned},
    }
    if base is not None:
        reference = evaluate_one(base[0], base[1], data_path, settings)
        for name in ("eval_loss", "perplexity", "exact_match"):
            metrics[f"base_{name}"] = {"value": float(reference[name])}
        # Positive means the fine-tune is better.
        metrics["exact_match_improvement"] = {"value": float(tuned["exact_match"] - reference["exact_match"])}
        metrics["eval_loss_improvement"] = {"value": float(reference["eval_loss"] - tuned["eval_loss"])}
        report["base_model"] = base[0]
        report["details"]["base_model"] = reference
    return report


def write_evaluation(report: dict[str, Any], output_dir: Path) -> Path:
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / "evaluation.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path
