"""The definition cache (pipelines/definition/cache.py): a hit returns the bytes a build would, and any
input that could change those bytes is a miss."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from config import load_config
from pipelines.definition import cache

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def builds(monkeypatch, tmp_path):
    monkeypatch.setenv(cache.SWITCH, str(tmp_path / "definitions"))
    calls: list[str] = []

    def build(cfg):
        calls.append(cfg.pipeline_name)
        return json.dumps({"Version": "2020-12-01", "Steps": [], "built": len(calls)}) + "\n"

    return calls, build


def test_a_second_call_with_the_same_inputs_is_a_hit(builds):
    calls, build = builds
    cfg = load_config([], [])
    first = cache.cached_definition(cfg, build)
    assert cache.cached_definition(cfg, build) == first
    assert len(calls) == 1


def test_a_config_change_is_a_miss(builds):
    calls, build = builds
    cache.cached_definition(load_config([], []), build)
    cache.cached_definition(load_config([], ["training.max_steps=7"]), build)
    assert len(calls) == 2


def test_setting_a_value_equal_to_its_default_is_a_miss(builds):
    """An unset training.warmup_steps is left out of the job's hyperparameters, a set one is written:
    the same values, different definitions."""
    calls, build = builds
    cache.cached_definition(load_config([], []), build)
    cache.cached_definition(load_config([], ["training.warmup_steps=5"]), build)
    assert len(calls) == 2


def test_the_source_digest_changes_with_any_py_or_yaml_file_and_skips_editor_debris(monkeypatch, tmp_path):
    for package in cache.SOURCES:
        (tmp_path / package).mkdir(parents=True)
    (tmp_path / "training/job.py").write_text("A = 1\n")
    (tmp_path / "pipelines/definition/sdk_config.yaml").write_text("x: 1\n")
    monkeypatch.setattr(cache, "REPO", tmp_path)

    def digest() -> str:
        cache.sources_digest.cache_clear()
        return cache.sources_digest()

    first = digest()
    (tmp_path / "training/.#job.py").symlink_to(tmp_path / "nowhere")  # Emacs's lock file: dangling
    (tmp_path / "training/notes.txt").write_text("not code")
    assert digest() == first
    (tmp_path / "training/job.py").write_text("A = 2\n")
    second = digest()
    assert second != first
    (tmp_path / "pipelines/definition/sdk_config.yaml").write_text("x: 2\n")
    assert digest() != second
    cache.sources_digest.cache_clear()


def test_an_sdk_version_or_environment_change_is_a_miss(builds, monkeypatch):
    calls, build = builds
    cfg = load_config([], [])
    cache.cached_definition(cfg, build)
    monkeypatch.setattr(cache, "_versions", lambda: {"sagemaker-core": "99"})
    cache.cached_definition(cfg, build)
    other = "eu-central-1" if os.environ.get("AWS_DEFAULT_REGION") != "eu-central-1" else "eu-west-1"
    monkeypatch.setenv("AWS_DEFAULT_REGION", other)
    cache.cached_definition(cfg, build)
    assert len(calls) == 3
    for name in cache.CREDENTIALS:  # a credentials refresh is not a miss
        monkeypatch.setenv(name, "refreshed")
    cache.cached_definition(cfg, build)
    assert len(calls) == 3


@pytest.mark.parametrize("content", ['{"Version": ', "{}", '{"Version": "2020-12-01"}', "[]"])
def test_a_torn_or_foreign_entry_is_a_miss_and_is_replaced(builds, content):
    calls, build = builds
    cfg = load_config([], [])
    path = cache.cache_dir() / f"{cache.definition_key(cfg)}.json"
    path.parent.mkdir(parents=True)
    path.write_text(content)
    cache.cached_definition(cfg, build)
    assert len(calls) == 1 and path.read_text() != content


def test_only_the_newest_entries_are_kept(builds, monkeypatch):
    calls, build = builds
    monkeypatch.setattr(cache, "KEEP", 2)
    for steps in (7, 8, 9):
        cache.cached_definition(load_config([], [f"training.max_steps={steps}"]), build)
    assert len(list(cache.cache_dir().glob("*.json"))) == 2


@pytest.mark.parametrize("value", ["on", "1", "true", ""])
def test_a_natural_on_value_means_the_default_folder_not_a_folder_named_so(monkeypatch, tmp_path, value):
    monkeypatch.setenv(cache.SWITCH, value)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache.enabled() and cache.cache_dir() == tmp_path / "llm-neuron-mlops/definitions"


def test_off_builds_every_time(builds, monkeypatch):
    calls, build = builds
    monkeypatch.setenv(cache.SWITCH, "off")
    cfg = load_config([], [])
    cache.cached_definition(cfg, build)
    cache.cached_definition(cfg, build)
    assert len(calls) == 2


def test_an_unwritable_cache_folder_warns_and_still_answers(builds, monkeypatch, tmp_path, caplog):
    calls, build = builds
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv(cache.SWITCH, str(blocker / "definitions"))
    text = cache.cached_definition(load_config([], []), build)
    assert json.loads(text)["built"] == 1
    assert (
        "could not keep the pipeline definition" in caplog.text
        and "MLOPS_DEFINITION_CACHE=off" in caplog.text
    )


@pytest.fixture(scope="module")
def two_cli_runs(tmp_path_factory):
    """`mlops pipeline definition` twice in fresh processes sharing one cache folder; each prints the
    files of the modules the command loaded (beyond those the CLI loads to start)."""
    tmp = tmp_path_factory.mktemp("cli")
    env = dict(os.environ, **{cache.SWITCH: str(tmp / "definitions")})
    code = (
        "import json, sys; from pipelines.cli.app import main; sys.argv = ['mlops', 'pipeline', 'definition', "
        f"'--out', {str(tmp / 'p.json')!r}]\n"
        "before = set(sys.modules)\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(json.dumps([getattr(m, '__file__', None) or '' for n, m in list(sys.modules.items()) if n not in before]))"
    )
    runs = []
    for _ in range(2):
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
        )
        runs.append([Path(f) for f in json.loads(out.stdout.splitlines()[-1]) if f])
        assert (tmp / "p.json").read_bytes() == (ROOT / "tests/golden/pipeline.json").read_bytes()
    return runs


def test_the_cli_answers_a_repeat_from_the_cache_without_importing_the_sdk(two_cli_runs):
    first, second = two_cli_runs
    sdk = lambda files: [f for f in files if "sagemaker" in f.parts]  # noqa: E731
    assert sdk(first), "the first run builds with the SDK"
    assert not sdk(second), "the second run is a cache hit"


def test_the_source_digest_sees_every_package_the_builder_imports(two_cli_runs):
    """Every module of ours that building a definition loads lies under one of the hashed folders, so
    no edit to them can leave a stale entry."""
    ours = [f for f in two_cli_runs[0] if f.is_relative_to(ROOT) and ".venv" not in f.parts]
    assert any(f.is_relative_to(ROOT / "pipelines/definition") for f in ours)
    outside = {
        str(f.relative_to(ROOT)) for f in ours if not any(f.is_relative_to(ROOT / p) for p in cache.SOURCES)
    }
    # The CLI calls the builder; the builder does not read it.
    assert {name for name in outside if not name.startswith("pipelines/cli/")} == set(), outside


def test_a_key_that_cannot_be_computed_builds_and_warns(builds, monkeypatch, caplog):
    calls, build = builds

    def unreadable():
        raise PermissionError(13, "Permission denied", "training/job.py")

    monkeypatch.setattr(cache, "sources_digest", unreadable)
    text = cache.cached_definition(load_config([], []), build)
    assert json.loads(text)["built"] == 1
    assert "the pipeline definition cache is unusable" in caplog.text and "Permission denied" in caplog.text
