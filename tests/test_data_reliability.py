"""Reading training data stays bounded and says what it read (issue 15, items 10 and 16).

A 50 MB line once took 12 GB and two minutes before it was rejected; a folder silently took in
``.ipynb_checkpoints/`` and ignored ``*.jsonl.gz``; gzip or Parquet named ``.jsonl`` gave one
"not valid UTF-8" per line.
"""

import gzip
import io
import json
import logging
import subprocess
import sys
import time
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from training.data import MIN_LINE_BYTES, load_examples, max_line_bytes
from training.errors import UserError
from training.prepare import prepare_channel
from training.tokenize import PREFIX_CHARS_PER_TOKEN, longest_token_chars, tokenize_example

ROOT = Path(__file__).resolve().parents[1]
GOOD = {"prompt": "2+2?", "completion": "4"}
BIG = 16 << 20  # a 16 MiB line: far over the limit, small enough to keep the test fast


def _jsonl(*records) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def _huge_line(size: int) -> bytes:
    head = b'{"prompt": "p", "completion": "'
    return head + b"x" * (size - len(head) - 2) + b'"}'


# ---- item 10: a huge line is refused unread, in bounded memory -------------------------------------


@pytest.mark.parametrize("name", ["d.jsonl", "d.jsonl.gz"])
def test_a_huge_line_is_refused_unread_with_its_place_and_size(tmp_path, name):
    raw = _jsonl(GOOD) + _huge_line(BIG) + b"\n" + _jsonl(GOOD)
    f = tmp_path / name
    f.write_bytes(gzip.compress(raw, compresslevel=1) if name.endswith(".gz") else raw)
    del raw

    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(UserError) as info:
            load_examples(f, max_seq_length=256)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    elapsed = time.perf_counter() - t0

    message = str(info.value)
    assert f"{f}:2: a line of {BIG:,} bytes, longer than {max_line_bytes(256):,} bytes" in message
    assert "max_seq_length=256" in message and "raise max_seq_length" in message
    assert "skip_invalid_lines=true" in message
    # Reading the whole line would hold it at least twice (bytes, then str): 32 MiB and more. Bounded
    # reading holds one chunk of the ~1.2 MiB limit (twice, while the buffered reader joins its pieces).
    assert peak < 3 * max_line_bytes(256), f"peak {peak:,} bytes for a {BIG:,}-byte line"
    assert elapsed < 10

    # Like any bad line, it can be skipped and counted; the lines after it keep their numbers.
    loaded = load_examples(f, skip_invalid=True, max_seq_length=256)
    assert [ex["source"] for ex in loaded.examples] == [f"{f}:1", f"{f}:3"]
    assert len(loaded.skipped) == 1 and loaded.skipped[0].startswith(f"{f}:2: a line of")


def test_the_line_limit_grows_with_max_seq_length_and_never_refuses_a_fitting_example():
    assert max_line_bytes(16, 81) > MIN_LINE_BYTES
    assert max_line_bytes(32768, 81) == 32768 * 81 * 6 + MIN_LINE_BYTES
    # The most an example of 4096 tokens can take: every token as long as the longest (81 bytes), every
    # byte a character that JSON escapes as \uXXXX.
    assert len(json.dumps({"prompt": "\x01" * 4096 * 81, "completion": "c"})) < max_line_bytes(4096, 81)


def test_a_line_without_a_limit_still_has_one(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_bytes(_jsonl(GOOD))
    assert len(load_examples(f).examples) == 1  # callers without max_seq_length read normally
    assert max_line_bytes(None) >= max_line_bytes(32768)


def test_prepare_refuses_a_huge_line_before_tokenizing(tmp_path, smollm2_tokenizer):
    f = tmp_path / "train.jsonl"
    f.write_bytes(_jsonl(GOOD) + _huge_line(5 << 20) + b"\n")
    t0 = time.perf_counter()
    with pytest.raises(UserError, match=rf"train.jsonl:2: a line of {5 << 20:,} bytes"):
        prepare_channel(
            smollm2_tokenizer,
            f,
            channel="train",
            max_seq_length=64,
            overlong="truncate",
            skip_invalid_lines=False,
        )
    assert time.perf_counter() - t0 < 5  # tokenizing 5 MB would take ~4 s and 500 MB by itself


class _SpyTokenizer:
    """The real tokenizer, recording the length of every text it is asked to encode."""

    def __init__(self, tokenizer):
        self._tokenizer = tokenizer
        self.encoded: list[int] = []

    def __getattr__(self, name):
        return getattr(self._tokenizer, name)

    def __call__(self, text, **kwargs):
        self.encoded.append(len(text))
        return self._tokenizer(text, **kwargs)


def test_an_overlong_example_is_tokenized_only_as_far_as_the_limit(smollm2_tokenizer):
    spy = _SpyTokenizer(smollm2_tokenizer)
    long = {
        "source": "t:1",
        "messages": None,
        "prompt": "Summarize: " + "word " * 200_000,
        "completion": "ok",
    }
    out = tokenize_example(spy, long, max_tokens=64, chars_per_token=81)
    assert out["cut"] and out["length"] == 65 and out["chars"] > 1_000_000
    assert spy.encoded == [65 * PREFIX_CHARS_PER_TOKEN]  # not the million characters


def test_a_prefix_gives_the_same_tokens_as_the_whole_text(smollm2_tokenizer):
    tok = smollm2_tokenizer
    text = " ".join(f"token{i} is number {i}." for i in range(3000))
    example = {"source": "t:1", "messages": None, "prompt": text, "completion": "done"}
    messages = [{"role": "user", "content": text}, {"role": "assistant", "content": "done"}]
    whole = tok(tok.apply_chat_template(messages, tokenize=False), add_special_tokens=False)["input_ids"]
    out = tokenize_example(tok, example, max_tokens=256, chars_per_token=longest_token_chars(tok))
    assert out["input_ids"] == whole[:257]


def test_an_example_denser_than_any_token_is_overlong(smollm2_tokenizer):
    # 81 characters per token on average cannot happen with this vocabulary; at 4 it is counted as
    # longer than any that could fit, without tokenizing all of it.
    spy = _SpyTokenizer(smollm2_tokenizer)
    example = {"source": "t:1", "messages": None, "prompt": "word " * 2000, "completion": "ok"}
    out = tokenize_example(spy, example, max_tokens=2000, chars_per_token=4)
    assert out["cut"] and out["length"] <= 2000 and spy.encoded == [2001 * 4]


def test_truncating_a_long_document_keeps_its_first_tokens(tmp_path, smollm2_tokenizer):
    f = tmp_path / "train.jsonl"
    document = "word " * 150_000  # 750 KB: under the line limit, far over the token limit
    f.write_bytes(_jsonl(GOOD, {"prompt": "Repeat: hi", "completion": "hi " + document}))
    common = dict(channel="train", max_seq_length=64, skip_invalid_lines=False)
    with pytest.raises(
        UserError, match=r"train.jsonl:2: 750,\d{3} characters, longer than max_seq_length=64 tokens"
    ):
        prepare_channel(smollm2_tokenizer, f, overlong="reject", **common)
    prepared = prepare_channel(smollm2_tokenizer, f, overlong="truncate", **common)
    assert prepared.stats["truncated_examples"] == 1 and prepared.stats["examples"] == 2


_MEASURE = """
import json, resource, sys
from pathlib import Path
from transformers import AutoTokenizer
from training.prepare import prepare_channel
tok = AutoTokenizer.from_pretrained(sys.argv[3])
small = Path(sys.argv[1]) / "small.jsonl"
small.write_text(json.dumps({"prompt": "a", "completion": "b"}) + "\\n")
prepare_channel(tok, small, channel="w", max_seq_length=64, overlong="truncate", skip_invalid_lines=False)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
prepare_channel(tok, Path(sys.argv[2]), channel="train", max_seq_length=64, overlong="truncate",
                skip_invalid_lines=False)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
"""


@pytest.mark.slow  # ~20 s: a fresh interpreter imports transformers and datasets
def test_peak_memory_of_prepare_does_not_follow_the_input(tmp_path, smollm2_tokenizer):
    smollm2_tokenizer.save_pretrained(tmp_path / "tokenizer")
    f = tmp_path / "train.jsonl"
    records = [{"prompt": "Repeat: hi", "completion": "hi " + "word " * 190_000} for _ in range(3)]
    f.write_bytes(_jsonl(*records))  # three 950 KB examples: each would cost ~100 MB to tokenize whole
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(tmp_path), str(f), str(tmp_path / "tokenizer")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    grown_mib = int(done.stdout.strip().splitlines()[-1])
    assert grown_mib < 40, f"peak RSS grew by {grown_mib} MiB for three 950 KB examples"


# ---- item 16: which files a folder holds ----------------------------------------------------------


def test_a_folder_reads_gzip_skips_hidden_names_and_says_what_it_read(tmp_path, caplog):
    data = tmp_path / ".mlops" / "s3" / "train"  # a hidden folder above the channel does not count
    (data / "sub").mkdir(parents=True)
    (data / ".ipynb_checkpoints").mkdir()
    (data / "a.jsonl").write_bytes(_jsonl(GOOD, GOOD))
    (data / "sub" / "b.jsonl.gz").write_bytes(gzip.compress(_jsonl(GOOD, GOOD, GOOD)))
    (data / ".ipynb_checkpoints" / "a-checkpoint.jsonl").write_bytes(b"{stale and broken\n")
    (data / ".notes.jsonl").write_bytes(b"{not data\n")
    (data / "README.md").write_text("about the data\n")

    with caplog.at_level(logging.INFO, logger="training.data"):
        loaded = load_examples(data)

    assert len(loaded.examples) == 5
    assert loaded.files == [data / "a.jsonl", data / "sub" / "b.jsonl.gz"]
    assert loaded.records == {str(data / "a.jsonl"): 2, str(data / "sub" / "b.jsonl.gz"): 3}
    assert loaded.examples[-1]["source"] == f"{data / 'sub' / 'b.jsonl.gz'}:3"
    log = caplog.text
    assert "train data: read 2 file(s): a.jsonl (2 records), sub/b.jsonl.gz (3 records)" in log
    assert "skipped hidden .ipynb_checkpoints/, .notes.jsonl" in log
    assert "ignored README.md (not .jsonl, .json, .jsonl.gz, .json.gz)" in log


def test_a_folder_with_only_hidden_data_says_so(tmp_path):
    (tmp_path / ".ipynb_checkpoints").mkdir()
    (tmp_path / ".ipynb_checkpoints" / "train-checkpoint.jsonl").write_bytes(_jsonl(GOOD))
    with pytest.raises(UserError, match=r"no .jsonl, .json, .jsonl.gz or .json.gz files .* hidden names"):
        load_examples(tmp_path)


def _parquet_bytes() -> bytes:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    buffer = io.BytesIO()
    pq.write_table(pa.table({"prompt": ["a"], "completion": ["b"]}), buffer)
    return buffer.getvalue()


def _zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("train.jsonl", _jsonl(GOOD))
    return buffer.getvalue()


@pytest.mark.parametrize(
    "name, content, message",
    [
        (
            "d.jsonl",
            lambda: gzip.compress(_jsonl(GOOD)),
            "is gzip-compressed data, not JSONL text; name it *.jsonl.gz",
        ),
        ("d.jsonl", _parquet_bytes, "is a Parquet file, not JSONL text; convert it to JSONL, e.g."),
        ("d.json", _zip_bytes, "is a zip archive, not JSONL text; unzip it"),
        (
            "d.jsonl",
            lambda: _jsonl(GOOD).decode().encode("utf-16"),
            "is UTF-16 text, not JSONL text; re-save it as UTF-8",
        ),
        ("d.jsonl", lambda: _jsonl(GOOD).decode().encode("utf-16-le"), "is UTF-16 text (no byte-order mark)"),
        ("d.jsonl.gz", lambda: _jsonl(GOOD), "named .gz but is not gzip-compressed; give it its real name"),
        ("d.jsonl.gz", lambda: gzip.compress(_parquet_bytes()), "the gzip stream holds a Parquet file"),
    ],
)
def test_a_file_of_another_format_is_named_with_what_to_do(tmp_path, name, content, message):
    f = tmp_path / name
    f.write_bytes(content())
    for skip in (False, True):  # skipping covers bad lines, never a whole unreadable file
        with pytest.raises(UserError) as info:
            load_examples(f, skip_invalid=skip)
        assert "train data has 1 file(s) that cannot be read as JSONL:" in str(info.value)
        assert f"{f}: " in str(info.value) and message in str(info.value)


def test_a_truncated_gzip_file_is_named_with_the_last_line_read(tmp_path):
    f = tmp_path / "d.jsonl.gz"
    whole = gzip.compress(_jsonl(*[{"prompt": f"q{i}", "completion": "a"} for i in range(5000)]))
    f.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(UserError, match=rf"{f}: the gzip stream is corrupt after line \d+ .*re-upload it"):
        load_examples(f)


def test_a_json_array_and_deep_nesting_are_line_errors(tmp_path):
    f = tmp_path / "d.json"
    f.write_text(json.dumps([GOOD, GOOD]) + "\n" + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(UserError) as info:
        load_examples(f)
    assert f"{f}:1: expected a JSON object, got a JSON array; JSONL holds one object per line" in str(
        info.value
    )
    assert f"{f}:2: JSON nested too deeply to be an example" in str(info.value)


def test_an_unreadable_file_is_named(tmp_path, monkeypatch):
    f = tmp_path / "d.jsonl"
    f.write_bytes(_jsonl(GOOD))
    real_open = Path.open

    def refuse(self, *args, **kwargs):  # chmod 0 does not stop root, who runs the tests in CI images
        if self == f:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", refuse)
    with pytest.raises(
        UserError, match=r"d.jsonl: cannot be read \(Permission denied\); check its permissions"
    ):
        load_examples(f)


# ---- issue 15, review: a number past Python's int-string limit ---------------------------------------


def test_a_number_longer_than_pythons_digit_limit_is_a_line_problem(tmp_path):
    # json.loads raises a plain ValueError (not JSONDecodeError) for an integer over 4300 digits.
    f = tmp_path / "d.jsonl"
    f.write_bytes(_jsonl(GOOD) + b'{"prompt": "p", "completion": "c", "n": ' + b"1" * 5000 + b"}\n")
    with pytest.raises(UserError) as info:
        load_examples(f)
    assert f"{f}:2: a number longer than 4300 digits, more than any field of an example takes" in str(
        info.value
    )
    loaded = load_examples(f, skip_invalid=True)
    assert [ex["source"] for ex in loaded.examples] == [f"{f}:1"] and len(loaded.skipped) == 1
