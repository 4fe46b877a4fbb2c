import pytest


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    """The default model's real tokenizer (ChatML template), read from the packaged GGUF."""
    from pipelines.local_train import smollm2_gguf_path
    from training.base_model import load_tokenizer

    gguf = smollm2_gguf_path()
    return load_tokenizer(str(gguf.parent), gguf.name)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, smollm2_tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = smollm2_tokenizer
    out = tmp_path_factory.mktemp("tiny")
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2)
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out
