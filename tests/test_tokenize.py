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
