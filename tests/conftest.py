import atexit
import os
import shutil
import tempfile

import pytest

# jsii prints a Node end-of-life banner on every start; the CDK app works on this Node.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

# Pipeline definitions are cached in a folder of this test process's own (pipelines/definition/cache.py;
# one per xdist worker): the same config is built once per worker, never read from a developer's
# ~/.cache, and subprocesses (the CLI, cdk synth) share it through the environment.
_definitions = tempfile.mkdtemp(prefix="mlops-test-definitions-")
atexit.register(shutil.rmtree, _definitions, True)
os.environ["MLOPS_DEFINITION_CACHE"] = _definitions


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    """The default model's real tokenizer (ChatML template), read from the packaged GGUF."""
    from pipelines.local.base_model import smollm2_gguf_path
    from training.base_model import load_tokenizer

    gguf = smollm2_gguf_path()
    return load_tokenizer(str(gguf.parent), gguf.name)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, smollm2_tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = smollm2_tokenizer
    out = tmp_path_factory.mktemp("tiny")
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_bf16_model(tmp_path_factory, tiny_model):
    """``tiny_model`` saved in bf16, as our merged models are, with its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM

    saved = tmp_path_factory.mktemp("tiny-bf16")
    AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.bfloat16).save_pretrained(saved)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (tiny_model / name).exists():
            (saved / name).write_bytes((tiny_model / name).read_bytes())
    return saved


@pytest.fixture(scope="session")
def fake_inf2_export():
    """Stands in for the optimum-neuron export (``inference.compile._compile_inf2``), which cannot run
    here: writes the layout optimum-neuron 0.4.5 produces, at the requested shapes."""
    import json

    def _fake_inf2_export(model_dir, output_dir, settings):
        (output_dir / "config.json").write_text("{}")
        (output_dir / "neuron_config.json").write_text(
            json.dumps(
                {
                    "batch_size": settings.batch_size,
                    "sequence_length": settings.sequence_length,
                    "tp_degree": settings.tensor_parallel_size,
                    "torch_dtype": settings.dtype,
                    "target": "trn1",
                }
            )
        )
        (output_dir / "model.pt").write_bytes(b"graphs")
        weights = output_dir / "checkpoint" / "weights"
        weights.mkdir(parents=True)
        for rank in range(settings.tensor_parallel_size):
            (weights / f"tp{rank}_sharded_checkpoint.safetensors").write_bytes(b"w")
        from inference.compile import check_inf2_artifact

        return {"artifact": "optimum-neuron export", "compiled": check_inf2_artifact(output_dir, settings)}

    return _fake_inf2_export
