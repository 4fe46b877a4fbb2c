"""The `prepare` entrypoint (the pipeline's Prepare step); the fine-tune on its output is in tests/e2e/."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from containers.entrypoint import main
from training.errors import UserError
from training.hyperparameters import TrainHyperparameters
from training.packing import load_packed
from training.prepare import prepare_channel, prepare_for_training

ROOT = Path(__file__).resolve().parents[1]
TASK = ROOT / "training/tasks/date_normalization"


def _processing_job(tmp_path, tiny_model, train_lines=None):
    opt = tmp_path / "opt"
    for name in ("train", "validation"):
        (opt / "processing" / name).mkdir(parents=True)
    if train_lines is None:
        shutil.copy(TASK / "train.jsonl", opt / "processing/train/")
    else:
        (opt / "processing/train/data.jsonl").write_text("\n".join(train_lines) + "\n")
    shutil.copy(TASK / "validation.jsonl", opt / "processing/validation/")
    shutil.copytree(tiny_model, opt / "processing/model")
    return opt


def test_prepare_writes_packed_channels_and_stats(tmp_path, tiny_model, smollm2_tokenizer, monkeypatch):
    opt = _processing_job(tmp_path, tiny_model)
    monkeypatch.setenv("MLOPS_OPT_ML", str(opt))
    assert main(["prepare", "--max-seq-length", "256"]) == 0

    stats = json.loads((opt / "processing/stats/data_stats.json").read_text())
    train_lines = len((TASK / "train.jsonl").read_text().splitlines())
    val_lines = len((TASK / "validation.jsonl").read_text().splitlines())
    assert stats["examples"] == train_lines + val_lines
    assert stats["channels"]["train"]["examples"] == train_lines
    assert stats["channels"]["train"]["records_per_file"] == {
        str(opt / "processing/train/train.jsonl"): train_lines
    }
    assert stats["dropped"] == 0 and stats["max_seq_length"] == 256
    assert 0 < stats["padding_fraction"] < 0.5 and len(stats["content_sha256"]) == 64
    from training.fingerprints import folder_sha256

    assert stats["base_model_sha256"] == folder_sha256(tiny_model)
    assert (
        stats["tokens"]
        == stats["channels"]["train"]["real_tokens"] + stats["channels"]["validation"]["real_tokens"]
    )

    # What the fine-tune reads from the packed folder equals packing the JSONL in the job itself.
    direct = prepare_channel(
        smollm2_tokenizer,
        TASK / "train.jsonl",
        channel="train",
        max_seq_length=256,
        overlong="reject",
        skip_invalid_lines=False,
    )
    hp = TrainHyperparameters(max_seq_length=256)
    packed = prepare_for_training(smollm2_tokenizer, opt / "processing/packed_train", "train", hp)
    for name in ("input_ids", "labels", "position_ids", "real_per_block"):
        assert np.array_equal(getattr(packed.blocks, name), getattr(direct.blocks, name)), name
    assert packed.blocks.real_tokens == direct.blocks.real_tokens
    assert packed.blocks.target_tokens == direct.blocks.target_tokens

    # The content hash names the data, not the run: same files, same hash.
    again = tmp_path / "again"
    assert main(["prepare", "--max-seq-length", "256", "--output-dir", str(again)]) == 0
    assert (
        json.loads((again / "stats/data_stats.json").read_text())["content_sha256"] == stats["content_sha256"]
    )


def test_packed_channel_with_other_block_length_or_tokenizer_is_refused(
    tmp_path, tiny_model, smollm2_tokenizer, monkeypatch
):
    opt = _processing_job(tmp_path, tiny_model)
    monkeypatch.setenv("MLOPS_OPT_ML", str(opt))
    assert main(["prepare", "--max-seq-length", "128", "--overlong", "truncate"]) == 0
    folder = opt / "processing/packed_train"
    with pytest.raises(
        UserError,
        match=r"packed into blocks of 128 tokens but max_seq_length=256; rerun Prepare "
        r"with --max-seq-length 256",
    ):
        load_packed(folder, "train", 256, smollm2_tokenizer)
    meta = json.loads((folder / "packed_meta.json").read_text())
    (folder / "packed_meta.json").write_text(json.dumps({**meta, "tokenizer_sha256": "0" * 64}))
    with pytest.raises(UserError, match="tokenized with another tokenizer than the base model's"):
        load_packed(folder, "train", 128, smollm2_tokenizer)


def test_bad_lines_fail_prepare_with_file_and_line(tmp_path, tiny_model, monkeypatch):
    good = (TASK / "train.jsonl").read_text().splitlines()[0]
    opt = _processing_job(tmp_path, tiny_model, [good, "{not json", good, '{"prompt": "only a prompt"}'])
    monkeypatch.setenv("MLOPS_OPT_ML", str(opt))
    assert main(["prepare", "--max-seq-length", "256"]) == 2
    failure = (opt / "output/message").read_text()
    assert "data.jsonl:2:" in failure and "data.jsonl:4:" in failure
    assert not (opt / "processing/stats/data_stats.json").exists()


def test_prepare_without_base_model_says_where_it_belongs(tmp_path, tiny_model, monkeypatch):
    opt = _processing_job(tmp_path, tiny_model)
    shutil.rmtree(opt / "processing/model")
    monkeypatch.setenv("MLOPS_OPT_ML", str(opt))
    assert main(["prepare", "--max-seq-length", "256"]) == 2
    assert "--model-dir:" in (opt / "output/message").read_text()
    assert "holds no base model" in (opt / "output/message").read_text()


def test_a_huge_line_fails_prepare_with_its_place_not_an_out_of_memory_kill(
    tmp_path, tiny_model, monkeypatch
):
    # 12 GB for one 50 MB line got the Prepare instance killed with no reason given (issue 15, item 10).
    good = (TASK / "train.jsonl").read_text().splitlines()[0]
    huge = json.dumps({"prompt": "Summarize: " + "word " * 1_000_000, "completion": "ok"})
    opt = _processing_job(tmp_path, tiny_model, [good, huge, good])
    monkeypatch.setenv("MLOPS_OPT_ML", str(opt))
    assert main(["prepare", "--max-seq-length", "256", "--overlong", "truncate"]) == 2
    failure = (opt / "output/message").read_text()
    assert f"data.jsonl:2: a line of {len(huge):,} bytes" in failure
    assert "the most an example of max_seq_length=256 tokens can take" in failure


def test_gzip_named_jsonl_fails_prepare_naming_the_format(tmp_path, tiny_model, monkeypatch):
    import gzip

    opt = _processing_job(tmp_path, tiny_model)
    train = opt / "processing/train/train.jsonl"
    train.write_bytes(gzip.compress(train.read_bytes()))
    monkeypatch.setenv("MLOPS_OPT_ML", str(opt))
    assert main(["prepare", "--max-seq-length", "256"]) == 2
    failure = (opt / "output/message").read_text()
    assert "train.jsonl: this is gzip-compressed data, not JSONL text; name it *.jsonl.gz" in failure
