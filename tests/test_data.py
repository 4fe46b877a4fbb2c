import json

import pytest

from training.data import load_examples
from training.errors import UserError

GOOD = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}


def _write(tmp_path, lines, raw=None):
    f = tmp_path / "d.jsonl"
    if raw is not None:
        f.write_bytes(raw)
    else:
        f.write_text("".join(json.dumps(x) + "\n" if not isinstance(x, str) else x + "\n" for x in lines))
    return f


@pytest.mark.parametrize(
    "line, reason",
    [
        ("{not json", "not valid JSON"),
        ([1, 2], "expected a JSON object"),
        ({"text": "x"}, 'neither "messages" nor "prompt"/"completion"'),
        ({"messages": []}, "non-empty list"),
        ({"messages": [{"role": "bot", "content": "x"}]}, "role is 'bot'"),
        ({"messages": [{"role": "user", "content": "x"}]}, "no assistant message"),
        (
            {"messages": [{"role": "user", "content": "x"}, {"role": "system", "content": "s"}]},
            "may only come first",
        ),
        ({"prompt": "p", "completion": ""}, '"completion" must be a non-empty string'),
        ({"prompt": "p", "completion": "c", "messages": []}, "use one format per line"),
    ],
)
def test_each_bad_line_is_named_with_file_and_line(tmp_path, line, reason):
    f = _write(tmp_path, [GOOD, line])
    with pytest.raises(UserError) as exc:
        load_examples(f)
    assert f"{f}:2: " in str(exc.value) and reason in str(exc.value)


def test_bad_encoding_and_empty_file(tmp_path):
    f = _write(tmp_path, None, raw=json.dumps(GOOD).encode() + b"\n\xff\xfe\n")
    with pytest.raises(UserError, match=r"d.jsonl:2: not valid UTF-8"):
        load_examples(f)
    f.write_text("")
    with pytest.raises(UserError, match="the file is empty"):
        load_examples(f)


def test_errors_are_capped_with_a_count_and_skipping_is_counted(tmp_path):
    f = _write(tmp_path, [GOOD] + ["{bad"] * 30)
    with pytest.raises(UserError) as exc:
        load_examples(f)
    assert "30 invalid line(s)" in str(exc.value) and "and 10 more (30 in all)" in str(exc.value)
    loaded = load_examples(f, skip_invalid=True)
    assert len(loaded.examples) == 1 and len(loaded.skipped) == 30
