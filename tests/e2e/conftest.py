"""Fixtures for the end-to-end tests only: a second model family beside ``tiny_model`` (Llama)."""

import pytest


@pytest.fixture(scope="session")
def tiny_qwen3_model(tmp_path_factory, smollm2_tokenizer):
    """A 2-layer random Qwen3ForCausalLM saved with SmolLM2's tokenizer (ChatML, as Qwen3 uses).

    Qwen3 differs from Llama where our code could care: per-head RMSNorm on queries and keys
    (``q_norm``/``k_norm``, norms and not linear layers, so LoRA must not target them), an explicit
    ``head_dim`` that need not be ``hidden_size / num_attention_heads``, and no BOS token in its config
    (Qwen's tokenizers add none); EOS is ``<|im_end|>`` as in Qwen3's instruct checkpoints."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    tok = smollm2_tokenizer
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
