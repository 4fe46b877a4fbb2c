"""Fixtures for the end-to-end tests only: a second model family beside ``tiny_model`` (Llama)."""

import pytest

# Qwen3's chat template, reduced to what our data exercises: ChatML turns, and the final assistant turn
# (after the last user message) opened by an empty reasoning block, as Qwen/Qwen3-0.6B's
# tokenizer_config.json chat_template renders it (``'<think>\n' + reasoning_content + '\n</think>\n\n' +
# content``, reasoning_content empty); earlier assistant turns are rendered without it, and the
# generation prompt is ``<|im_start|>assistant\n`` (enable_thinking left unset). Written here, not copied:
# the real template's tools, reasoning_content and /think handling are beyond what our data holds.
QWEN3_LIKE_TEMPLATE = (
    "{%- for m in messages %}"
    "{%- if m.role == 'assistant' and loop.last %}"
    "{{ '<|im_start|>assistant\\n<think>\\n\\n</think>\\n\\n' + m.content + '<|im_end|>\\n' }}"
    "{%- else %}{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{%- endif %}"
)


@pytest.fixture(scope="session")
def qwen3_chat_template():
    return QWEN3_LIKE_TEMPLATE


@pytest.fixture(scope="session")
def tiny_qwen3_model(tmp_path_factory, smollm2_tokenizer):
    """A 2-layer random Qwen3ForCausalLM saved with SmolLM2's tokenizer (its vocabulary), rendering chats
    as Qwen3 does (``QWEN3_LIKE_TEMPLATE``): the whole pipeline trains, evaluates and serves replies that
    open with the empty reasoning block.

    Qwen3 differs from Llama where our code could care: per-head RMSNorm on queries and keys
    (``q_norm``/``k_norm``, norms and not linear layers, so LoRA must not target them), an explicit
    ``head_dim`` that need not be ``hidden_size / num_attention_heads``, and no BOS token in its config
    (Qwen's tokenizers add none); EOS is ``<|im_end|>`` as in Qwen3's instruct checkpoints."""
    import copy

    from transformers import Qwen3Config, Qwen3ForCausalLM

    tok = copy.deepcopy(smollm2_tokenizer)  # the session fixture is shared: do not change it
    tok.chat_template = QWEN3_LIKE_TEMPLATE
    out = tmp_path_factory.mktemp("tiny_qwen3")
    cfg = Qwen3Config(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        # 32, not 64 / 4 = 16: code that derives the head size from hidden_size breaks here, as it would
        # on Qwen3-0.6B (hidden 1024, 16 heads, head_dim 128).
        head_dim=32,
        max_position_embeddings=2048,
        eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
        bos_token_id=None,
        tie_word_embeddings=True,
    )
    Qwen3ForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out
