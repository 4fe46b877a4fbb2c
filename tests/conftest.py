import pytest


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    """The default model's real tokenizer (ChatML template), read from the packaged GGUF."""
    from pipelines.local_train import smollm2_gguf_path
    from training.base_model import load_tokenizer

    gguf = smollm2_gguf_path()
    return load_tokenizer(str(gguf.parent), gguf.name)
