"""What Qwen3 changes for our training and evaluation code, checked on a 2-layer Qwen3 (fast; the whole
local pipeline on Qwen3 is tests/e2e/test_local_pipeline.py): packing keeps examples apart, the loss on
target positions only equals the model's own, and Qwen3's chat template (an empty reasoning block before
the final answer) is tokenized and scored as the model will answer."""

import pytest
from packing_checks import assert_packed_examples_do_not_attend_to_each_other


def _tiny_qwen3(**extra):
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    sizes = dict(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2)
    heads = dict(num_attention_heads=4, num_key_value_heads=2, head_dim=16)  # 4 * 16 != 32: explicit
    return Qwen3ForCausalLM(Qwen3Config(**sizes, **heads, **extra)).eval()


def test_packed_examples_do_not_attend_to_each_other_in_qwen3():
    assert_packed_examples_do_not_attend_to_each_other(_tiny_qwen3())


def test_the_target_only_loss_equals_the_models_own_on_tied_qwen3():
    # token_loss_sum runs the decoder and the (tied) output layer itself; it must agree with the model.
    import torch

    from training.loss import token_loss_sum

    model = _tiny_qwen3(tie_word_embeddings=True)
    ids = torch.tensor([[3, 4, 5, 6, 7, 8]])
    labels = torch.tensor([[-100, -100, 5, 6, 7, -100]])
    pos = torch.arange(6).unsqueeze(0)
    loss_sum, count = token_loss_sum(model, ids, labels, pos)
    reference = model(input_ids=ids, position_ids=pos, labels=labels, use_cache=False).loss
    assert count == 3 and torch.allclose(loss_sum / count, reference, atol=1e-5)


@pytest.fixture
def qwen3_template_tokenizer(smollm2_tokenizer, qwen3_chat_template):
    import copy

    tokenizer = copy.deepcopy(smollm2_tokenizer)
    tokenizer.chat_template = qwen3_chat_template
    return tokenizer


def test_the_tiny_qwen3_of_the_pipeline_run_renders_the_reasoning_block(tiny_qwen3_model):
    # The whole local pipeline (tests/e2e/test_local_pipeline.py) loads this folder's tokenizer: what it
    # trains on, evaluates and serves is Qwen3's rendering, not plain ChatML.
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_qwen3_model)
    messages = [{"role": "user", "content": "1 May 1990?"}, {"role": "assistant", "content": "1990-05-01"}]
    assert tok.apply_chat_template(messages, tokenize=False) == (
        "<|im_start|>user\n1 May 1990?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
        "1990-05-01<|im_end|>\n"
    )


def test_qwen3_template_targets_the_reasoning_block_and_the_answer(qwen3_template_tokenizer):
    from training.tokenize import tokenize_example

    tok = qwen3_template_tokenizer
    messages = [{"role": "user", "content": "1 May 1990?"}, {"role": "assistant", "content": "1990-05-01"}]
    example = {"messages": messages, "prompt": None, "completion": None, "source": "train.jsonl:1"}
    out = tokenize_example(tok, example, max_tokens=64, chars_per_token=64)
    targets = tok.decode(
        [t for t, label in zip(out["input_ids"], out["labels"], strict=True) if label != -100]
    )
    # The model learns to open its reply with the empty block, as Qwen3 does when not thinking.
    assert targets == "<think>\n\n</think>\n\n1990-05-01<|im_end|>\n"


def test_exact_match_scores_the_answer_after_the_reasoning_block():
    from inference.evaluate import answer_text

    assert answer_text("<think>\n\n</think>\n\n1990-05-01") == "1990-05-01"
    assert answer_text("<think>\nthe month is May\n</think>\n\n 1990-05-01 ") == "1990-05-01"
    assert answer_text(" 1990-05-01\n") == "1990-05-01"  # Llama / ChatML replies: trimmed only
    assert answer_text("<think>\nstill thinking when max_new_tokens ran out") == (
        "<think>\nstill thinking when max_new_tokens ran out"
    )


def test_a_multi_turn_conversation_under_qwen3s_template_is_refused_naming_the_line(
    qwen3_template_tokenizer,
):
    # Qwen3's template drops the reasoning block from earlier assistant turns, so a conversation up to a
    # turn is no prefix of the whole; training/tokenize.py refuses it with the line, not a wrong mask.
    from training.errors import UserError
    from training.tokenize import tokenize_example

    messages = [
        {"role": "user", "content": "1 May 1990?"},
        {"role": "assistant", "content": "1990-05-01"},
        {"role": "user", "content": "2 June 2000?"},
        {"role": "assistant", "content": "2000-06-02"},
    ]
    example = {"messages": messages, "prompt": None, "completion": None, "source": "train.jsonl:7"}
    with pytest.raises(UserError, match=r"train.jsonl:7: the tokenizer's chat template does not render"):
        tokenize_example(qwen3_template_tokenizer, example, max_tokens=64, chars_per_token=64)
