"""`evaluate` pieces: answer extraction, fixed generation shapes, model archives, and the entrypoint."""

import copy
import json
import tarfile

import pytest
import torch

from inference.evaluate import EvalSettings, answer_text, exact_match_cases
from inference.generation import Shape, chat_prompt_ids, generate
from inference.model_files import model_folder
from training.errors import UserError


def test_exact_match_case_is_the_last_assistant_turn():
    msgs = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "user", "content": "c"},
        {"role": "assistant", "content": " d "},
    ]
    cases = exact_match_cases(
        [
            {"messages": msgs, "prompt": None, "completion": None, "source": "v.jsonl:1"},
            {"messages": None, "prompt": "p", "completion": "q", "source": "v.jsonl:2"},
        ]
    )
    assert cases[0] == (msgs[:3], " d ", "v.jsonl:1")
    assert cases[1] == ([{"role": "user", "content": "p"}], "q", "v.jsonl:2")


def test_only_a_leading_reasoning_block_is_stripped_from_an_answer():
    # Before: everything up to the last </think> was dropped wherever it stood, so a wrong answer with a
    # stray tag and the right tail scored as a match.
    assert answer_text("2020-12-31</think>1990-05-01") == "2020-12-31</think>1990-05-01"
    assert answer_text("2020-12-31</think>1990-05-01") != answer_text("1990-05-01")
    assert answer_text("\n <think>\nMay\n</think>\n\n1990-05-01 ") == "1990-05-01"
    # The first block only: an answer that itself holds a tag keeps it.
    assert answer_text("<think></think>a</think>b") == "a</think>b"
    assert answer_text("x <think>\n</think> y") == "x <think>\n</think> y"


@pytest.fixture(scope="module")
def tiny_lm(smollm2_tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(smollm2_tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
        )
    ).eval()
    tok = copy.deepcopy(smollm2_tokenizer)  # the session fixture is shared: do not mutate it
    tok.padding_side = "left"
    return model, tok


def test_generation_always_prefills_one_shape_and_respects_limits(tiny_lm):
    model, tok = tiny_lm
    prefill_shapes = []
    handle = model.register_forward_pre_hook(
        lambda m, a, kw: (
            prefill_shapes.append(tuple(kw["input_ids"].shape)) if kw["input_ids"].shape[1] > 1 else None
        ),
        with_kwargs=True,
    )
    prompts = [chat_prompt_ids(tok, [{"role": "user", "content": "x" * n}]) for n in (1, 5, 9, 3, 7)]
    try:
        out = generate(
            model,
            tok,
            prompts,
            Shape(batch_size=2, prompt_length=64, max_new_tokens=4),
            max_new_tokens=[4, 1, 2, 3, 4],
        )
    finally:
        handle.remove()
    assert prefill_shapes == [(2, 64)] * 3  # 5 prompts in batches of 2: the last batch is filled, not shrunk
    assert len(out) == 5
    assert [o.completion_tokens <= lim for o, lim in zip(out, [4, 1, 2, 3, 4], strict=True)] == [True] * 5
    assert out[0].prompt_tokens == len(prompts[0])
    with pytest.raises(ValueError, match="exceed prompt_length=4"):
        generate(model, tok, prompts, Shape(2, 4, 4))


def test_model_folder_accepts_a_folder_or_its_archive(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    assert model_folder(tmp_path / "m", "--model-dir") == tmp_path / "m"
    (tmp_path / "a").mkdir()
    with tarfile.open(tmp_path / "a" / "model.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "m" / "config.json", arcname="config.json")
    assert (model_folder(tmp_path / "a", "--model-dir") / "config.json").is_file()


def test_model_folder_errors_say_what_was_found(tmp_path):
    with pytest.raises(
        UserError, match=r"--model-dir: .*nope does not exist; give the model folder \(or its model.tar.gz\)"
    ):
        model_folder(tmp_path / "nope", "--model-dir")
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "weights.bin").write_text("")
    with pytest.raises(
        UserError,
        match=r"holds neither a Hugging Face model \(config.json\) nor model.tar.gz \(found: weights.bin\)",
    ):
        model_folder(tmp_path / "x", "--model-dir")
    (tmp_path / "t").mkdir()
    with tarfile.open(tmp_path / "t" / "model.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "x" / "weights.bin", arcname="weights.bin")
    with pytest.raises(UserError, match="holds no config.json at its top level"):
        model_folder(tmp_path / "t", "--model-dir")


def test_bad_settings_are_named():
    with pytest.raises(UserError, match="batch_size=0: must be > 0"):
        EvalSettings(batch_size=0).check()


def test_evaluate_entrypoint_missing_data(tmp_path, monkeypatch):
    from containers.entrypoint import main

    (tmp_path / "processing" / "model").mkdir(parents=True)
    (tmp_path / "processing" / "model" / "config.json").write_text("{}")
    monkeypatch.setenv("MLOPS_OPT_ML", str(tmp_path))
    assert main(["evaluate"]) == 2
    reason = (tmp_path / "output" / "message").read_text()  # a processing job's ExitMessage
    assert "--data: " in reason and "processing/validation does not exist" in reason


def test_evaluation_json_format(tmp_path, tiny_lm):
    """The entrypoint end to end on a tiny random model: the document the quality gate reads."""
    from containers.entrypoint import main

    model, tok = tiny_lm
    model.save_pretrained(tmp_path / "model")
    tok.save_pretrained(tmp_path / "model")
    data = tmp_path / "val.jsonl"
    data.write_text(
        "".join(json.dumps({"prompt": f"say {i}", "completion": str(i)}) + "\n" for i in range(5))
    )
    rc = main(
        [
            "evaluate",
            "--model-dir",
            str(tmp_path / "model"),
            "--data",
            str(data),
            "--base-model",
            str(tmp_path / "model"),
            "--output-dir",
            str(tmp_path / "out"),
            "--batch-size",
            "2",
            "--max-new-tokens",
            "3",
            "--max-seq-length",
            "64",
        ]
    )
    assert rc == 0
    doc = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    for name in ("eval_loss", "perplexity", "exact_match", "base_exact_match", "exact_match_improvement"):
        assert isinstance(doc["metrics"][name]["value"], float), name
    assert doc["metrics"]["exact_match_improvement"]["value"] == 0.0  # same model on both sides
    shape = doc["details"]["model"]["generation_shape"]
    assert shape["batch_size"] == 2 and shape["max_new_tokens"] == 3 and shape["prompt_length"] % 16 == 0
