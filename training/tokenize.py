"""Turn validated examples into token ids and a loss mask over assistant/completion tokens only.

The chat template renders the whole conversation once; the character span of each assistant turn is
found by rendering the conversation up to that turn (with the generation prompt) and up to its end.
Tokens whose characters fall inside those spans are the targets. Tokenizing the full text once
(rather than piece by piece) keeps the ids exactly what the model sees at inference.

Tokenizing costs about 100 bytes of memory per character (the Rust encoding with its offsets; truncation
applies only after the whole text is encoded), so a text is never tokenized whole: only a prefix long
enough to hold ``max_tokens + 1`` tokens is, which is all the length policy needs to see.
"""

from __future__ import annotations

from typing import Any

from training.errors import UserError

IGNORE_INDEX = -100
# Natural text averages about 4 characters per token; a prefix of 16 per token holds max_tokens + 1
# tokens with room to spare, and ends far past them, so the cut cannot change how they are split.
PREFIX_CHARS_PER_TOKEN = 16


def longest_token_chars(tokenizer: Any) -> int:
    """Characters in the vocabulary's longest token: no token covers more of a text.

    (A byte-level token string has one character per byte; a text has at most one character per byte.)
    """
    return max(len(token) for token in tokenizer.get_vocab())


def _render(tokenizer: Any, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=add_generation_prompt
    )


def render_with_target_spans(tokenizer: Any, example: dict[str, Any]) -> tuple[str, list[tuple[int, int]]]:
    """(text, [(start, end) character spans the model must learn to produce])."""
    messages = example["messages"]
    if messages is None:
        prompt, completion = example["prompt"], example["completion"]
        if tokenizer.chat_template is None:
            # No template: plain continuation, ended by EOS so the model learns where to stop.
            eos = tokenizer.eos_token or ""
            return prompt + completion + eos, [(len(prompt), len(prompt) + len(completion) + len(eos))]
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}]
    elif tokenizer.chat_template is None:
        raise UserError(
            f"{example['source']}: chat examples need a tokenizer with a chat template, and this base model's "
            "tokenizer has none; use prompt/completion lines or an instruct model"
        )
    text = _render(tokenizer, messages, add_generation_prompt=False)
    spans = []
    for i, msg in enumerate(messages):
        if msg["role"] != "assistant":
            continue
        before = _render(tokenizer, messages[:i], add_generation_prompt=True) if i else ""
        through = _render(tokenizer, messages[: i + 1], add_generation_prompt=False)
        if not text.startswith(through) or not through.startswith(before):
            raise UserError(
                f"{example['source']}: the tokenizer's chat template does not render a conversation as a prefix "
                "of its continuation, so assistant tokens cannot be located; use a template that does "
                "(e.g. ChatML) or prompt/completion lines"
            )
        spans.append((len(before), len(through)))
    return text, spans


def tokenize_example(
    tokenizer: Any, example: dict[str, Any], *, max_tokens: int, chars_per_token: int
) -> dict[str, Any]:
    """input_ids and labels (IGNORE_INDEX outside assistant spans) for one example, at most
    ``max_tokens + 1`` of them: one more than ``max_tokens`` says the example is longer.

    ``cut`` is true when tokens were counted on a prefix of the text only: the example is longer than
    ``max_tokens`` (or, past ``chars_per_token`` characters per token, longer than any that could fit).
    """
    text, spans = render_with_target_spans(tokenizer, example)
    enc, cut = _encode_prefix(tokenizer, text, max_tokens, chars_per_token)
    labels = []
    for token_id, (start, _end) in zip(enc["input_ids"], enc["offset_mapping"], strict=True):
        # A token belongs to a target span if it starts inside it; zero-width special tokens
        # (start == end) count by their position too.
        is_target = any(s <= start < e for s, e in spans)
        labels.append(token_id if is_target else IGNORE_INDEX)
    ids = enc["input_ids"]
    return {"input_ids": ids, "labels": labels, "length": len(ids), "chars": len(text), "cut": cut}


def _encode_prefix(tokenizer: Any, text: str, max_tokens: int, chars_per_token: int) -> tuple[Any, bool]:
    """The encoding of the longest prefix needed to see ``max_tokens + 1`` tokens, and whether it is
    shorter than the text. A short prefix first; the full bound only when that holds too few tokens."""
    hard_cap = (max_tokens + 1) * chars_per_token
    first = min(hard_cap, (max_tokens + 1) * PREFIX_CHARS_PER_TOKEN)
    for cap in dict.fromkeys((first, hard_cap)):  # each once, in order
        enc = tokenizer(
            text[:cap],
            add_special_tokens=False,
            return_offsets_mapping=True,
            truncation=True,
            max_length=max_tokens + 1,
        )
        if len(enc["input_ids"]) > max_tokens or len(text) <= cap:
            break
    return enc, len(text) > cap
