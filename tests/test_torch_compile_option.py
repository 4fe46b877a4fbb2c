"""torch_compile: opt-in, left out of the pipeline definition until turned on, and a run that cannot
compile says why and trains eagerly (the speed itself is measured in bench/train_throughput.py)."""

from types import SimpleNamespace

import torch

from training.backends import torch_backend
from training.hyperparameters import TrainHyperparameters, to_sagemaker_strings


def test_torch_compile_reaches_the_job_only_when_turned_on():
    assert "torch_compile" not in to_sagemaker_strings(TrainHyperparameters())
    assert "torch_compile" not in to_sagemaker_strings(TrainHyperparameters(torch_compile=False))
    on = to_sagemaker_strings(TrainHyperparameters(torch_compile=True))
    assert on["torch_compile"] == "true"
    assert TrainHyperparameters.model_validate(on).torch_compile is True


def test_no_cpp_compiler_is_named_as_the_reason(monkeypatch):
    from torch._inductor import config as inductor_config
    from torch._inductor.cpp_builder import cpp_compiler_search

    cpp_compiler_search.cache_clear()
    monkeypatch.setattr(inductor_config.cpp, "cxx", (None, "/nonexistent/g++"))
    try:
        reason = torch_backend._compile_blocker(torch.device("cpu"))
    finally:
        cpp_compiler_search.cache_clear()
    assert reason is not None and "C++ compiler" in reason and "CXX" in reason


class _Decoder(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(10, 4)

    def forward(self, input_ids, position_ids, use_cache):
        return SimpleNamespace(last_hidden_state=self.emb(input_ids))


class _LM(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.decoder = _Decoder()
        self.head = torch.nn.Linear(4, 10)

    def get_decoder(self):
        return self.decoder

    def get_output_embeddings(self):
        return self.head


def test_a_failed_compile_falls_back_to_eager_with_the_reason(monkeypatch, caplog):
    lm = _LM()

    def broken(*_a, **_k):
        raise RuntimeError("inductor exploded\nsecond line")

    monkeypatch.setattr(torch_backend.torch, "compile", lambda module: broken)
    parts = SimpleNamespace(
        model=SimpleNamespace(get_base_model=lambda: lm),
        compiled=torch_backend._CompiledForward(lm),
        compile_note="compiled",
    )
    ids = torch.tensor([[1, 2, 3, 4]])
    labels = torch.tensor([[-100, 2, 3, 4]])
    pos = torch.arange(4)[None]
    with caplog.at_level("WARNING"):
        loss = torch_backend._forward(parts, ids, labels, pos)  # type: ignore[arg-type]
    eager, _ = torch_backend.token_loss_sum(lm, ids, labels, pos)
    assert torch.allclose(loss, eager)
    assert parts.compile_note == "eager: compiling failed (RuntimeError: inductor exploded)"
    assert "training eagerly" in caplog.text
    # Later steps go straight to the eager model.
    assert parts.compiled.get_decoder() is lm.decoder
