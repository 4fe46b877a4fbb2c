"""Loss mask from the real chat template: only assistant/completion tokens are targets."""

import pytest

from training.errors import UserError
from training.tokenize import IGNORE_INDEX, longest_token_chars, tokenize_example


def _targets(tok, out):
    return tok.decode(
        [t for t, lab in zip(out["input_ids"], out["labels"], strict=True) if lab != IGNORE_INDEX]
    )


def test_chat_loss_covers_each_assistant_turn_and_its_end_token(smollm2_tokenizer):
    tok = smollm2_tokenizer
    ex = {
        "source": "train.jsonl:1",
        "prompt": None,
        "completion": None,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "4"},
            {"role": "user", "content": "3+3?"},
            {"role": "assistant", "content": "6"},
        ],
    }
    out = tokenize_example(tok, ex, max_tokens=256, chars_per_token=longest_token_chars(tok))
    assert len(out["input_ids"]) == len(out["labels"]) == out["length"]
    assert _targets(tok, out) == "4<|im_end|>\n6<|im_end|>\n"
    assert out["labels"][0] == IGNORE_INDEX


def test_prompt_completion_is_rendered_as_one_exchange(smollm2_tokenizer):
    out = tokenize_example(
        smollm2_tokenizer,
        {"source": "t:1", "messages": None, "prompt": "Say hi", "completion": "hi"},
        max_tokens=256,
        chars_per_token=81,
    )
    assert _targets(smollm2_tokenizer, out) == "hi<|im_end|>\n"


def test_template_that_does_not_render_prefixes_is_a_clear_error(smollm2_tokenizer):
    import copy

    tok = copy.deepcopy(smollm2_tokenizer)
    # Renders the number of messages first, so a shorter conversation is not a prefix of a longer one.
    tok.chat_template = (
        "{{ messages|length }}{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"
    )
    ex = {
        "source": "train.jsonl:7",
        "prompt": None,
        "completion": None,
        "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
    }
    with pytest.raises(
        UserError,
        match=r"train.jsonl:7: the tokenizer's chat template does not render a conversation as a prefix",
    ):
        tokenize_example(tok, ex, max_tokens=256, chars_per_token=longest_token_chars(tok))


# ---- issue 15, review: long conversations and the tokenizer's state -----------------------------------


class _CountingTokenizer:
    """The real tokenizer, counting the conversations it renders and the messages in them."""

    def __init__(self, tokenizer):
        self._tokenizer = tokenizer
        self.renders = 0
        self.messages_rendered = 0

    def __getattr__(self, name):
        return getattr(self._tokenizer, name)

    def __call__(self, text, **kwargs):
        return self._tokenizer(text, **kwargs)

    def apply_chat_template(self, messages, **kwargs):
        self.renders += 1
        self.messages_rendered += len(messages)
        return self._tokenizer.apply_chat_template(messages, **kwargs)


def _turns(pairs, user="2+2?", assistant="4"):
    return [
        message
        for _ in range(pairs)
        for message in ({"role": "user", "content": user}, {"role": "assistant", "content": assistant})
    ]


def test_a_long_conversation_is_rendered_only_as_far_as_the_tokens_kept(smollm2_tokenizer):
    # Before the fix each assistant turn rendered the conversation up to it twice: 2,000 turns took
    # 2,000 renders of up to 2,000 messages (quadratic; a 1 MiB line of 14,000 turns took ~30 minutes).
    spy = _CountingTokenizer(smollm2_tokenizer)
    example = {"source": "t:1", "prompt": None, "completion": None, "messages": _turns(1000)}
    out = tokenize_example(
        spy, example, max_tokens=64, chars_per_token=longest_token_chars(smollm2_tokenizer)
    )
    assert out["cut"] and out["length"] == 65
    assert spy.renders <= 2 * 65 + 1 and spy.messages_rendered < 2000 + 65 * 65
    # The tokens kept, and which of them are targets, are those of a conversation that stops early.
    short = {**example, "messages": _turns(30)}
    same = tokenize_example(
        smollm2_tokenizer, short, max_tokens=64, chars_per_token=longest_token_chars(smollm2_tokenizer)
    )
    assert (out["input_ids"], out["labels"]) == (same["input_ids"], same["labels"])
    assert _targets(smollm2_tokenizer, out).startswith("4<|im_end|>\n4<|im_end|>\n")


def test_more_messages_than_max_tokens_is_overlong_and_bounds_the_renders(smollm2_tokenizer):
    import copy

    # A template that renders an empty message as nothing: the text stays empty, so only the message
    # count can bound the renders (every template this project supports opens a message with a role
    # header, which is at least one token).
    tok = copy.deepcopy(smollm2_tokenizer)
    tok.chat_template = "{% for m in messages %}{{ m.content }}{% endfor %}"
    spy = _CountingTokenizer(tok)
    example = {"source": "t:1", "prompt": None, "completion": None, "messages": _turns(1000, "", "")}
    out = tokenize_example(spy, example, max_tokens=64, chars_per_token=longest_token_chars(tok))
    assert out["cut"]
    assert spy.renders <= 2 * 65 + 1


def test_tokenizing_leaves_the_tokenizer_without_truncation(smollm2_tokenizer):
    # truncation=True switched truncation on inside the Rust tokenizer and left it there, so
    # save_pretrained wrote "truncation": {...} into the trained model's tokenizer.json.
    tok = smollm2_tokenizer
    example = {"source": "t:1", "messages": None, "prompt": "word " * 500, "completion": "ok"}
    tokenize_example(tok, example, max_tokens=64, chars_per_token=longest_token_chars(tok))
    assert tok.backend_tokenizer.truncation is None
