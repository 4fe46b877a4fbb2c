"""The merge step both backends end with; the Neuron path merges a consolidated adapter folder on CPU."""

import json

import pytest
import torch


@pytest.fixture()
def tiny_base(tmp_path):
    from tokenizers import Tokenizer, models
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=32,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
    )
    LlamaForCausalLM(cfg).save_pretrained(tmp_path / "base")
    vocab = {f"t{i}": i for i in range(32)}
    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel(vocab, unk_token="t0")), eos_token="t1", pad_token="t2"
    )
    return tmp_path / "base", tok


def _trained_adapter(base_dir, out):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base_dir),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
    )
    with torch.no_grad():  # non-zero B so the merge visibly changes the weights
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.fill_(0.01)
    model.save_pretrained(out)
    return model


def test_merge_adapter_folder_equals_in_memory_merge(tmp_path, tiny_base):
    from transformers import AutoModelForCausalLM

    from training.export import merge_adapter_folder

    base_dir, tok = tiny_base
    adapter = tmp_path / "model" / "adapter"
    peft_model = _trained_adapter(base_dir, adapter)
    expected = peft_model.merge_and_unload().state_dict()

    merge_adapter_folder(str(base_dir), adapter, tok, tmp_path / "model", "float32")
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "model")
    for key, value in merged.state_dict().items():
        torch.testing.assert_close(value, expected[key], msg=key)
    assert (tmp_path / "model" / "tokenizer.json").exists()
    assert json.loads((tmp_path / "model" / "config.json").read_text())["use_cache"] is True
    assert merged.generation_config.eos_token_id == tok.eos_token_id


def test_merge_without_adapter_config_says_what_is_missing(tmp_path, tiny_base):
    from training.export import merge_adapter_folder

    base_dir, tok = tiny_base
    (tmp_path / "adapter").mkdir()
    with pytest.raises(FileNotFoundError, match="no adapter_config.json in .*adapter"):
        merge_adapter_folder(str(base_dir), tmp_path / "adapter", tok, tmp_path / "model", "float32")
