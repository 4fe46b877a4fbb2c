"""Turn validated examples into token ids and a loss mask over assistant/completion tokens only.

The chat template renders the whole conversation once; the character span of each assistant turn is
found by rendering the conversation up to that turn (with the generation prompt) and up to its end,
for the turns that start within the tokens kept only (that search costs the square of its length).
Tokens whose characters fall inside those spans are the targets. Tokenizing the full text once
(rather than piece by piece) keeps the ids exactly what the model sees at inference.

Tokenizing costs about 100 bytes of memory per character (the Rust encoding with its offsets; truncation
applies only after the whole text is encoded), so a text is never tokenized whole: only a prefix long
enough to hold ``max_tokens + 1`` tokens is, which is all the length policy needs to see.
"""

from __future__ import annotations

import bisect
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


def _conversation(tokenizer: Any, example: dict[str, Any]) -> list[dict[str, str]] | None:
    """The messages the chat template renders; None for a plain continuation (no chat template)."""
    messages = example["messages"]
    if messages is None:
        if tokenizer.chat_template is None:
            return None
        return [
            {"role": "user", "content": example["prompt"]},
            {"role": "assistant", "content": example["completion"]},
        ]
    if tokenizer.chat_template is None:
        raise UserError(
            f"{example['source']}: chat examples need a tokenizer with a chat template, and this base model's "
            "tokenizer has none; use prompt/completion lines or an instruct model"
        )
    return list(messages)


def _plain_continuation(tokenizer: Any, example: dict[str, Any]) -> tuple[str, list[tuple[int, int]]]:
    """No template: prompt and completion, ended by EOS so the model learns where to stop."""
    prompt, completion, eos = example["prompt"], example["completion"], tokenizer.eos_token or ""
    return prompt + completion + eos, [(len(prompt), len(prompt) + len(completion) + len(eos))]


def _target_spans(
    tokenizer: Any, messages: list[dict[str, str]], text: str, source: str, covered_chars: int
) -> list[tuple[int, int]]:
    """The spans of the assistant turns that start within ``text[:covered_chars]``.

    Locating a turn renders the conversation up to it twice, so locating every turn costs the square of
    the conversation's length (a 1 MiB line of 14,000 turns took half an hour); turns past the tokens
    that are kept need no span, so the search stops at the first one."""
    spans = []
    for i, msg in enumerate(messages):
        if msg["role"] != "assistant":
            continue
        before = _render(tokenizer, messages[:i], add_generation_prompt=True) if i else ""
        if len(before) > covered_chars:
            break  # this turn, and every later one, starts after the last token kept
        through = _render(tokenizer, messages[: i + 1], add_generation_prompt=False)
        if not text.startswith(through) or not through.startswith(before):
            raise UserError(
                f"{source}: the tokenizer's chat template does not render a conversation as a prefix "
                "of its continuation, so assistant tokens cannot be located; use a template that does "
                "(e.g. ChatML) or prompt/completion lines"
            )
        spans.append((len(before), len(through)))
    return spans


def tokenize_example(
    tokenizer: Any, example: dict[str, Any], *, max_tokens: int, chars_per_token: int
) -> dict[str, Any]:
    """input_ids and labels (IGNORE_INDEX outside assistant spans) for one example, at most
    ``max_tokens + 1`` of them: one more than ``max_tokens`` says the example is longer.

    ``cut`` is true when tokens were counted on a prefix of the text only: the example is longer than
    ``max_tokens`` (or, past ``chars_per_token`` characters per token, longer than any that could fit),
    or it has more messages than ``max_tokens``.
    """
    messages = _conversation(tokenizer, example)
    if messages is None:
        text, spans = _plain_continuation(tokenizer, example)
    else:
        text = _render(tokenizer, messages, add_generation_prompt=False)  # once: linear in the line
    enc, cut = _encode_prefix(tokenizer, text, max_tokens, chars_per_token)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    # Every chat template this project supports (ChatML, Llama 3, Qwen3) opens each message with a role
    # header of at least one special token, so more than max_tokens messages cannot fit in max_tokens
    # tokens; that also bounds the turns to locate where a template renders a message as nothing.
    too_many_messages = messages is not None and len(messages) > max_tokens
    if messages is not None:
        covered = offsets[-1][1] if offsets else 0  # the characters of the tokens kept
        spans = _target_spans(tokenizer, messages[: max_tokens + 1], text, example["source"], covered)
    # Spans come in order and do not overlap (each turn's render is a prefix of the next one's).
    starts = [s for s, _ in spans]
    labels = []
    for token_id, (start, _end) in zip(ids, offsets, strict=True):
        # A token belongs to a target span if it starts inside it; zero-width special tokens
        # (start == end) count by their position too.
        at = bisect.bisect_right(starts, start) - 1
        is_target = at >= 0 and start < spans[at][1]
        labels.append(token_id if is_target else IGNORE_INDEX)
    return {
        "input_ids": ids,
        "labels": labels,
        "length": len(ids),
        "chars": len(text),
        "cut": cut or too_many_messages,
    }


def _encode_prefix(tokenizer: Any, text: str, max_tokens: int, chars_per_token: int) -> tuple[Any, bool]:
    """The encoding of the longest prefix needed to see ``max_tokens + 1`` tokens, and whether it is
    shorter than the text. A short prefix first; the full bound only when that holds too few tokens."""
    hard_cap = (max_tokens + 1) * chars_per_token
    first = min(hard_cap, (max_tokens + 1) * PREFIX_CHARS_PER_TOKEN)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    before = backend.truncation if backend is not None else None
    try:
        for cap in dict.fromkeys((first, hard_cap)):  # each once, in order
            # truncation keeps the ids past max_tokens + 1 out of Python lists (and their offsets).
            enc = tokenizer(
                text[:cap],
                add_special_tokens=False,
                return_offsets_mapping=True,
                truncation=True,
                max_length=max_tokens + 1,
            )
            if len(enc["input_ids"]) > max_tokens or len(text) <= cap:
                break
    finally:
        # truncation=True switches truncation on inside the Rust tokenizer and leaves it there, and
        # save_pretrained would write it into the trained model's tokenizer.json: put it back.
        if backend is not None:
            if before is None:
                backend.no_truncation()
            else:
                backend.enable_truncation(**before)
    return enc, len(text) > cap
