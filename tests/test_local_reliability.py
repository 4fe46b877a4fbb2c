"""Issue 15: the local store under concurrency, crashes, corruption and a full disk.

Each test reproduces a reported failure: two runs at once, an orphaned trainer, garbage state and
cache files, a truncated cached archive, hard-linked store files, ENOSPC, a recycled pid.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from training.errors import UserError

REPO = Path(__file__).resolve().parents[1]


def _wait_gone(pid: int, seconds: float) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:  # a zombie child of ours still answers kill(0); reap it
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return True
        except ChildProcessError:
            pass
        time.sleep(0.1)
    return False


# ---- item 5: one writer at a time --------------------------------------------------------------------


def test_a_second_command_on_a_store_is_refused_naming_the_holder(tmp_path):
    from pipelines.local.lock import StoreBusy, store_lock

    with store_lock(tmp_path, "mlops run --local", "20261129-010203-abcd"):
        with pytest.raises(StoreBusy) as refused:
            with store_lock(tmp_path, "mlops endpoint stop --local"):
                pass
    message = str(refused.value)
    assert f"pid {os.getpid()}" in message
    assert "`mlops run --local`" in message and "execution 20261129-010203-abcd" in message
    assert "since 20" in message and "local.store_dir" in message
    with store_lock(tmp_path, "mlops endpoint stop --local"):  # released when the holder is done
        pass


def test_run_local_is_refused_while_another_run_holds_the_store(tmp_path):
    from config import load_config
    from pipelines.local.lock import StoreBusy, store_lock
    from pipelines.local.run import run_local

    cfg = load_config(overrides=[f"local.store_dir={tmp_path}"])
    with store_lock(tmp_path.resolve(), "mlops run --local", "other-run"):
        with pytest.raises(StoreBusy, match="execution other-run"):
            run_local(cfg, {})


def test_the_lock_dies_with_its_holder_even_by_kill_9(tmp_path):
    from pipelines.local.lock import store_lock

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import time, sys
                from pathlib import Path
                from pipelines.local.lock import store_lock
                with store_lock(Path({str(tmp_path)!r}), "mlops run --local", "held"):
                    print("locked", flush=True)
                    time.sleep(60)
                """
            ),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    holder.kill()
    holder.wait()
    with store_lock(tmp_path, "mlops run --local"):
        pass


def test_endpoint_stop_takes_the_lock(tmp_path):
    from typer.testing import CliRunner

    from pipelines.cli.app import app
    from pipelines.local.lock import store_lock

    with store_lock(tmp_path.resolve(), "mlops run --local", "busy-run"):
        result = CliRunner().invoke(
            app, ["endpoint", "stop", "--local", "--set", f"local.store_dir={tmp_path}"]
        )
    assert result.exit_code == 2
    assert "in use by" in result.output and "busy-run" in result.output


# ---- item 6: an orphaned job dies; --resume tells a dead "running" step ------------------------------

PARENT = """
import sys
from pathlib import Path
from containers.contract import PROCESSING_JOB
from pipelines.local.jobs import JobSpec, run_job

root = Path(sys.argv[1])
spec = JobSpec("Busy", "local", ["python", "-c", "import time\\nwhile True: time.sleep(0.05)"], {}, root, PROCESSING_JOB)
run_job(spec, root / "job.log", False, on_start=lambda pid, ticks: print(pid, flush=True))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_job_dies_with_the_run_that_started_it(tmp_path):
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    job = int(parent.stdout.readline())
    try:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        assert _wait_gone(job, 15), f"job {job} outlived its parent"
    finally:
        try:
            os.kill(job, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_a_job_exits_when_its_output_pipe_breaks():
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from containers.entrypoint import exit_on_broken_pipe\n"
            "import time\nexit_on_broken_pipe()\n"
            "while True:\n    print('step', flush=True)\n    time.sleep(0.01)\n",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
    )
    assert writer.stdout is not None
    writer.stdout.readline()
    writer.stdout.close()  # the reader is gone, as when `mlops run --local` is killed
    assert writer.wait(timeout=15) == -signal.SIGPIPE


def _executor(tmp_path: Path, steps: list[dict] | None = None, **kwargs):
    from pipelines.local.executor import Executor

    definition = {
        "Version": "2020-12-01",
        "Parameters": [],
        "Steps": steps or [{"Name": "FineTune", "Type": "Training", "Arguments": {}}],
    }
    return Executor(definition, tmp_path, "p", {}, "exec-1", definition_sha256="key", **kwargs)


def _state(executor, **step) -> None:
    executor.run_dir.mkdir(parents=True)
    (executor.run_dir / "state.json").write_text(
        json.dumps(
            {
                "definition_sha256": "key",
                "parameters": {},
                "invocation": {"config": [], "set": []},
                "steps": {
                    "FineTune": {"name": "FineTune", "type": "Training", "display_name": "FineTune", **step}
                },
            }
        )
    )


def test_resume_names_a_running_step_whose_runner_died(tmp_path, monkeypatch):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    shown = _Shown()
    executor = _executor(tmp_path, on_note=shown.view.on_note)
    _state(executor, status="running", pid=gone.pid)
    monkeypatch.setattr(executor, "_run_step", lambda step, state: None)
    executor.run(resume=True)
    notes = [shown[0][len("note: ") :]]
    assert notes == [
        f"step FineTune was left running by an earlier attempt that is gone (its job, pid {gone.pid}, has "
        "exited); it runs again and resumes from its checkpoints"
    ]


def test_resume_refuses_while_the_earlier_job_still_runs(tmp_path):
    from pipelines.local.executor import ExecutorError
    from training.process_start import start_ticks

    orphan = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "print('up', flush=True); import time; time.sleep(60)",
            "containers.entrypoint",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert orphan.stdout is not None and orphan.stdout.readline() == b"up\n"  # exec'd: cmdline is final
        executor = _executor(tmp_path)
        _state(executor, status="running", pid=orphan.pid, pid_started=start_ticks(orphan.pid))
        with pytest.raises(ExecutorError, match=rf"still running as pid {orphan.pid}.*kill {orphan.pid}"):
            executor.load_state()
    finally:
        orphan.kill()
        orphan.wait()


def test_resume_after_set_flags_names_the_flags(tmp_path):
    from pipelines.local.executor import ExecutorError

    executor = _executor(tmp_path, invocation={"config": [], "set": []})
    _state(executor, status="failed")
    state = json.loads((executor.run_dir / "state.json").read_text())
    state["definition_sha256"] = "other"
    state["invocation"] = {"config": [], "set": ["training.max_steps=3"]}
    (executor.run_dir / "state.json").write_text(json.dumps(state))
    with pytest.raises(ExecutorError) as refused:
        executor.load_state()
    assert "--set: then ['training.max_steps=3'], now none" in str(refused.value)
    assert "same --config and --set flags" in str(refused.value)


# ---- item 7: corrupt state and cache files ------------------------------------------------------------


def test_a_garbage_state_file_under_resume_is_named(tmp_path):
    from config import load_config
    from pipelines.local.run import run_local

    run = tmp_path / "runs" / "20261129-000000-abcd"
    run.mkdir(parents=True)
    (run / "state.json").write_text("{garbage")
    cfg = load_config(overrides=[f"local.store_dir={tmp_path}"])
    with pytest.raises(UserError) as refused:
        run_local(cfg, {}, resume="20261129-000000-abcd")
    assert f"its state file {run / 'state.json'} is not valid JSON" in str(refused.value)
    assert "Start a new run without --resume" in str(refused.value)


def test_the_executor_names_a_garbage_state_file(tmp_path):
    from pipelines.local.executor import ExecutorError

    executor = _executor(tmp_path)
    executor.run_dir.mkdir(parents=True)
    (executor.run_dir / "state.json").write_text("[1, 2]")
    with pytest.raises(ExecutorError, match=r"state\.json holds a JSON list, not an object"):
        executor.load_state()


class _Shown:
    """What `mlops run --local` shows through a pipe: the real StepView on a non-terminal console."""

    def __init__(self) -> None:
        import io

        from rich.console import Console

        from pipelines.local.view import StepView

        self.out = io.StringIO()
        self.view = StepView(Console(file=self.out, force_terminal=False, width=400))

    def __getitem__(self, index: int) -> str:
        return self.out.getvalue().splitlines()[index]


def test_a_damaged_step_in_the_state_file_is_named(tmp_path):
    from pipelines.local.executor import ExecutorError

    executor = _executor(tmp_path)
    _state(executor, status="done", unknown_field=1)
    with pytest.raises(ExecutorError, match=r"step FineTune in its state file .*state\.json is damaged"):
        executor.load_state()


def _cached_step(tmp_path):
    lines = _Shown()
    step = {
        "Name": "Prepare",
        "Type": "Processing",
        "Arguments": {},
        "CacheConfig": {"Enabled": True, "ExpireAfter": "P30D"},
    }
    executor = _executor(tmp_path, [step], on_line=lines.view.on_line, on_note=lines.view.on_note)
    uri = "s3://local-artifacts/prepared/"
    folder = executor.store.path(uri)
    folder.mkdir(parents=True)
    (folder / "model.tar.gz").write_bytes(b"x" * 1000)
    args = {"AppSpecification": {"ImageUri": "i"}}
    state = executor.states["Prepare"]
    state.properties = {
        "ProcessingOutputConfig": {"Outputs": {"out": {"OutputName": "out", "S3Output": {"S3Uri": uri}}}}
    }
    executor._remember(step, args, state)
    return executor, step, args, folder, lines


def test_a_cache_hit_needs_its_outputs_unchanged(tmp_path):
    executor, step, args, folder, lines = _cached_step(tmp_path)
    assert executor._cache_hit(step, args, executor.states["Prepare"]) is True
    with open(folder / "model.tar.gz", "r+b") as archive:
        archive.truncate(10)  # a truncated cached archive is not the output that was cached
    assert executor._cache_hit(step, args, executor.states["Prepare"]) is False
    assert lines[-1] == (
        "note: Prepare: the cached output s3://local-artifacts/prepared/ changed since it was cached; "
        "running again"
    )


def test_a_garbage_cache_entry_is_a_miss_that_says_so(tmp_path):
    executor, step, args, _, lines = _cached_step(tmp_path)
    entry = executor._cache_file(step, args)
    entry.write_text("\x00garbage")
    assert executor._cache_hit(step, args, executor.states["Prepare"]) is False
    assert lines[-1].startswith(f"note: Prepare: cache entry {entry} is not valid JSON")


def test_state_and_cache_files_are_replaced_whole(tmp_path, monkeypatch):
    """A crash while writing leaves the previous state.json, never a truncated one."""
    import pipelines.local.executor as executor_module

    executor = _executor(tmp_path)
    executor.save_state()
    before = (executor.run_dir / "state.json").read_text()

    def crash(*args, **kwargs):
        raise OSError(errno.EIO, "simulated crash mid-write")

    monkeypatch.setattr("training.files.os.fsync", crash)
    executor.states["FineTune"].status = "running"
    with pytest.raises(OSError):
        executor.save_state()
    assert (executor.run_dir / "state.json").read_text() == before
    assert [p.name for p in executor.run_dir.iterdir()] == ["state.json"], "no temp file left behind"
    assert executor_module.STATE_FILE == "state.json"


def test_a_garbage_endpoint_file_is_set_aside_with_a_note(tmp_path, capsys):
    from pipelines.local.endpoint import endpoint_dir, read_state, stop

    folder = endpoint_dir(tmp_path)
    folder.mkdir()
    (folder / "endpoint.json").write_text("not json")
    assert read_state(tmp_path) is None
    assert "endpoint.json is not valid JSON" in capsys.readouterr().err
    assert (folder / "endpoint.json.unreadable").is_file()
    assert stop(tmp_path) is None


def test_a_server_pid_reused_by_another_server_process_is_not_ours(tmp_path):
    """A live process whose command line looks like the server, started at another time, is not it."""
    from pipelines.local.endpoint import server_alive
    from training.process_start import start_ticks

    other = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "print('up', flush=True); import time; time.sleep(30)",
            "containers.entrypoint",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert other.stdout is not None and other.stdout.readline() == b"up\n"  # exec'd: cmdline is final
        ticks = start_ticks(other.pid)
        assert server_alive({"pid": other.pid, "pid_started": ticks}) is True
        if ticks is not None:  # Linux: the start time tells a recycled pid apart
            assert server_alive({"pid": other.pid, "pid_started": ticks - 1}) is False
    finally:
        other.kill()
        other.wait()


def test_endpoint_stop_with_a_recycled_pid_does_not_say_stopped(tmp_path):
    from typer.testing import CliRunner

    from pipelines.cli.app import app
    from pipelines.local.endpoint import endpoint_dir

    folder = endpoint_dir(tmp_path)
    folder.mkdir()
    # Our pid is alive, but it is pytest, not the server: the pid was "recycled".
    (folder / "endpoint.json").write_text(json.dumps({"pid": os.getpid(), "url": "http://127.0.0.1:9"}))
    result = CliRunner().invoke(app, ["endpoint", "stop", "--local", "--set", f"local.store_dir={tmp_path}"])
    assert result.exit_code == 0, result.output
    assert "had already exited" in result.output and "stopped the local endpoint" not in result.output
    assert not (folder / "endpoint.json").exists()


# ---- item 8: a full disk ---------------------------------------------------------------------------------


def test_a_job_on_a_full_disk_says_what_ran_out_and_where(tmp_path, capsys):
    from containers.contract import TRAINING, OptMl
    from containers.entrypoint import EXIT_USER_ERROR, run_command

    opt_ml = OptMl(tmp_path)
    reserved = []

    def fill(opt_ml_, args):
        reserved.append((tmp_path / "output" / ".failure-reserve").is_file())
        try:
            raise OSError(
                errno.ENOSPC, "No space left on device", str(tmp_path / "checkpoints/step-4/adapter.bin")
            )
        except OSError as exc:
            raise RuntimeError("PytorchStreamWriter failed writing file") from exc

    assert run_command(opt_ml, "train", fill, None) == EXIT_USER_ERROR
    failure = opt_ml.failure_file(TRAINING).read_text()
    assert failure.startswith(
        f"no space left on the device while writing {tmp_path / 'checkpoints/step-4/adapter.bin'}: "
    )
    assert "pipeline.volume_size_gb" in failure and "resumes from the last complete checkpoint" in failure
    assert reserved == [True], "space for the failure reason is set aside while the job runs"
    assert not (tmp_path / "output" / ".failure-reserve").exists()
    assert "Traceback" not in capsys.readouterr().err


def test_torch_save_failing_on_a_nearly_full_disk_counts_as_disk_full(tmp_path, monkeypatch):
    import shutil

    from containers.contract import OptMl
    from containers.entrypoint import disk_full

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=1 << 20))
    message = disk_full(
        RuntimeError("[enforce fail at inline_container.cc] file write failed"), OptMl(tmp_path)
    )
    assert message is not None and message.startswith("no space left on the device: 1 MiB free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=1 << 40))
    assert disk_full(RuntimeError("a bug"), OptMl(tmp_path)) is None


def test_the_failure_reason_is_written_when_the_disk_is_full(tmp_path, monkeypatch):
    """Writing the reason itself would hit ENOSPC; the reserve is released first, so it fits."""
    from containers.contract import TRAINING, OptMl

    opt_ml = OptMl(tmp_path)
    opt_ml.reserve_failure_space(TRAINING)
    reserve = tmp_path / "output" / ".failure-reserve"
    real = __import__("training.files", fromlist=["write_text_atomic"]).write_text_atomic

    def full_unless_released(path, text):
        if reserve.exists():
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, text)

    monkeypatch.setattr("containers.contract.write_text_atomic", full_unless_released)
    opt_ml.write_failure(TRAINING, "no space left on the device")
    assert opt_ml.failure_file(TRAINING).read_text() == "no space left on the device\n"


def test_the_pipeline_on_a_full_disk_fails_the_step_and_writes_its_report(tmp_path, monkeypatch):
    import pipelines.local.executor as executor_module
    from pipelines.local.executor import ExecutionFailed

    executor = _executor(tmp_path)
    reserve = executor.run_dir / executor_module.RESERVE_FILE
    real = executor_module.write_json_atomic
    disk_full = []

    def full_unless_released(path, data):
        if disk_full and reserve.exists():
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, data)

    def fill(step, args, state):
        disk_full.append(True)  # the job filled the disk
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "s3/model.tar.gz"))

    monkeypatch.setattr(executor_module, "write_json_atomic", full_unless_released)
    monkeypatch.setattr(executor, "_run_job", fill)
    monkeypatch.setattr(executor_module, "resolve", lambda args, ctx: {})
    monkeypatch.setattr(executor_module, "check_request", lambda *a: None)
    with pytest.raises(ExecutionFailed) as failed:
        executor.run()
    assert failed.value.message.startswith(
        f"no space left on the device while writing {tmp_path / 's3/model.tar.gz'}"
    )
    assert "--resume exec-1" in failed.value.message
    report = json.loads((executor.run_dir / "report.json").read_text())
    assert report["status"] == "Failed" and report["steps"][0]["status"] == "failed"
    state = json.loads((executor.run_dir / "state.json").read_text())
    assert state["steps"]["FineTune"]["status"] == "failed"


def test_a_full_disk_before_any_step_is_one_clear_error(tmp_path, monkeypatch):
    from config import load_config
    from pipelines.local.run import run_local

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr("pipelines.local.lock.write_json_atomic", full)
    cfg = load_config(overrides=[f"local.store_dir={tmp_path}"])
    with pytest.raises(UserError) as refused:
        run_local(cfg, {})
    assert str(refused.value).startswith(
        f"no space left on the device while writing {tmp_path / 'lock.json'}"
    )
    assert "run again: finished steps come from the cache" in str(refused.value)


# ---- item 9: the store holds copies ------------------------------------------------------------------


def test_editing_a_source_in_place_never_changes_its_stored_copy(tmp_path):
    from pipelines.local.store import LocalStore

    store = LocalStore(tmp_path / "store")
    data = tmp_path / "train.jsonl"
    data.write_text('{"prompt": "a", "completion": "b"}\n')
    store.publish(data, "s3://local-data/datasets/abc/train/")
    stored = store.path("s3://local-data/datasets/abc/train/") / "train.jsonl"
    with open(data, "a") as handle:  # an in-place edit: same inode
        handle.write('{"prompt": "c", "completion": "d"}\n')
    assert stored.read_text() == '{"prompt": "a", "completion": "b"}\n'
    assert os.stat(stored).st_ino != os.stat(data).st_ino and os.stat(stored).st_nlink == 1


def test_downloads_of_one_object_are_independent_copies(tmp_path):
    from pipelines.local.store import LocalStore

    store = LocalStore(tmp_path / "store")
    archive = store.path("s3://local-artifacts/m/model.tar.gz")
    archive.parent.mkdir(parents=True)
    archive.write_bytes(b"x" * 4096)
    copies = [tmp_path / f"job{i}" for i in range(3)]
    for copy in copies:
        store.download("s3://local-artifacts/m/model.tar.gz", copy)
    with open(copies[0] / "model.tar.gz", "r+b") as handle:
        handle.truncate(10)
    assert archive.stat().st_size == 4096 and (copies[1] / "model.tar.gz").stat().st_size == 4096


def test_an_interrupted_publish_leaves_no_content_address(tmp_path, monkeypatch):
    import pipelines.local.store as store_module

    store = store_module.LocalStore(tmp_path / "store")
    src = tmp_path / "data"
    src.mkdir()
    for i in range(3):
        (src / f"{i}.jsonl").write_text("{}\n")
    calls = []
    real = store_module.copy_file

    def copy_then_fail(a, b):
        calls.append(a)
        if len(calls) == 2:
            raise KeyboardInterrupt
        real(a, b)

    monkeypatch.setattr(store_module, "copy_file", copy_then_fail)
    with pytest.raises(KeyboardInterrupt):
        store.publish(src, "s3://local-data/datasets/abc/train/")
    assert not store.exists("s3://local-data/datasets/abc/train/")
    assert list((tmp_path / "store" / "s3" / "local-data" / "datasets" / "abc").iterdir()) == []


def test_leftover_partial_copies_are_swept_under_the_lock(tmp_path):
    from pipelines.local.store import sweep_partials

    prefix = tmp_path / "s3" / "local-data" / "datasets" / "abc"
    (prefix / ".partial-train-4242").mkdir(parents=True)
    (prefix / ".partial-train-4242" / "train.jsonl").write_text("{}\n")
    (prefix / "validation").mkdir()
    (prefix / "validation" / ".partial-validation.jsonl").write_text("{")
    (prefix / "validation" / "validation.jsonl").write_text("{}\n")
    removed = sweep_partials(tmp_path)
    assert sorted(p.name for p in removed) == [".partial-train-4242", ".partial-validation.jsonl"]
    assert [p.name for p in prefix.rglob("*")] == ["validation", "validation.jsonl"]


# ---- items 14 and 16: paths and ports -----------------------------------------------------------------


@pytest.mark.parametrize("run_id", ["/abs/path", "../x", "..", "a/b"])
def test_a_run_id_is_a_folder_name_not_a_path(tmp_path, run_id):
    from config import load_config
    from pipelines.local.train import run_training

    cfg = load_config(overrides=[f"local.store_dir={tmp_path}"])
    with pytest.raises(UserError, match=rf"--run-id {run_id!r}: not a run id"):
        run_training(cfg, run_id)
    assert not Path("/abs/path").exists()


def test_serve_on_a_port_that_does_not_exist_is_a_user_error(tmp_path):
    served = subprocess.run(
        [
            sys.executable,
            "-m",
            "containers.entrypoint",
            "serve",
            "--port",
            "70000",
            "--model-dir",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert served.returncode == 2
    assert "--port 70000 is not a TCP port: give 1-65535" in served.stdout + served.stderr
    assert "Traceback" not in served.stdout + served.stderr


def test_a_parameter_uri_that_leaves_the_store_fails_the_step_with_a_reason(tmp_path):
    from pipelines.local.store import LocalStore, StorePathError

    with pytest.raises(StorePathError, match=r"must not be empty, '\.' or '\.\.'"):
        LocalStore(tmp_path).path("s3://local-data/../../../etc/")
    assert issubclass(
        StorePathError, UserError
    )  # so the executor fails the step with it, not "internal error"


def test_a_nan_metric_does_not_stop_the_report(tmp_path):
    """A diverged fine-tune writes eval_loss NaN; the run's report must still be written, as JSON."""
    step = {
        "Name": "Evaluate",
        "Type": "Processing",
        "Arguments": {},
        "PropertyFiles": [
            {
                "PropertyFileName": "EvaluationReport",
                "OutputName": "evaluation",
                "FilePath": "evaluation.json",
            }
        ],
    }
    executor = _executor(tmp_path, [step])
    uri = "s3://local-artifacts/eval/"
    folder = executor.store.path(uri)
    folder.mkdir(parents=True)
    (folder / "evaluation.json").write_text('{"metrics": {"eval_loss": {"value": NaN}, "exact_match": 0.5}}')
    state = executor.states["Evaluate"]
    state.status = "done"
    state.properties = {
        "ProcessingOutputConfig": {
            "Outputs": {"evaluation": {"OutputName": "evaluation", "S3Output": {"S3Uri": uri}}}
        }
    }
    executor.ctx.properties["Evaluate"] = state.properties
    report = json.loads(executor.write_report("Failed").read_text())  # strict JSON: no NaN token
    assert report["metrics"] == {"eval_loss": None, "exact_match": 0.5}


def test_a_run_ended_by_a_fail_step_leaves_no_disk_reserve(tmp_path):
    import pipelines.local.executor as executor_module
    from pipelines.local.executor import ExecutionFailed

    executor = _executor(tmp_path, [{"Name": "Gate", "Type": "Fail", "Arguments": {"ErrorMessage": "no"}}])
    with pytest.raises(ExecutionFailed):
        executor.run()
    assert not (executor.run_dir / executor_module.RESERVE_FILE).exists()


def test_a_running_endpoint_that_serves_the_same_artifact_and_code_is_kept(tmp_path, monkeypatch):
    """Issue 17, the cached demo: loading a server took ~20 s of a repeated `mlops run --local`. Only
    the same archive (path, size, mtime), model name, environment, interpreter, packages and code on
    disk, on the asked port and answering /ping, is kept; any difference starts a new server."""
    import importlib.metadata

    from pipelines.local import endpoint

    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(b"weights")
    folder = endpoint.endpoint_dir(tmp_path)
    folder.mkdir(parents=True)
    running = {"pid": 1, "port": 9, "url": "http://127.0.0.1:9", "model": "m", "version": 3, "log": "x"}

    def key_now(name: str = "m") -> str | None:
        env = endpoint.job_environment(endpoint.SERVING, {}, {}, endpoint.OptMl(folder / "opt_ml").root)
        return endpoint.serving_key(archive, name, env)

    def serving() -> None:
        (folder / "endpoint.json").write_text(json.dumps({**running, "serving_key": key_now()}))

    monkeypatch.setattr(endpoint, "server_alive", lambda state: True)
    ping = {"status": 200}
    monkeypatch.setattr(endpoint, "_get", lambda url, timeout=5.0: ping["status"])
    stopped: list[bool] = []
    monkeypatch.setattr(endpoint, "stop", lambda root, timeout=30.0: stopped.append(True))

    def no_new_server(*args, **kwargs):  # noqa: ANN002, ANN003
        raise RuntimeError("a new server was started")

    monkeypatch.setattr(endpoint.subprocess, "Popen", no_new_server)

    serving()
    state = endpoint.start(tmp_path, archive, "m", 4)
    assert state["reused"] is True and state["version"] == 4 and stopped == []
    assert json.loads((folder / "endpoint.json").read_text())["version"] == 4
    assert endpoint.start(tmp_path, archive, "m", 5, port=9)["version"] == 5

    real_version = importlib.metadata.version
    changes = {
        "another port": lambda: {"port": 10},
        "another model name": lambda: {"name": "other"},
        "no answer to /ping": lambda: ping.update(status=0),
        "not asked to reuse": lambda: {"reuse": False},
        "the archive rewritten, same size": lambda: (
            archive.write_bytes(b"WEIGHTS"),
            os.utime(archive, ns=(1, archive.stat().st_mtime_ns + 1_000_000)),
        ),
        "another interpreter": lambda: monkeypatch.setattr(sys, "executable", "/other/python"),
        "another thread count": lambda: monkeypatch.setenv("OMP_NUM_THREADS", "7"),
        "another torch": lambda: monkeypatch.setattr(
            importlib.metadata, "version", lambda n: "9.9" if n == "torch" else real_version(n)
        ),
        "edited code": lambda: monkeypatch.setattr(
            "pipelines.definition.cache.sources_digest_now", lambda: "edited"
        ),
    }
    for change, apply in changes.items():
        ping["status"] = 200
        serving()
        extra = apply() or {}
        kwargs = {k: v for k, v in extra.items() if k in ("port", "reuse")} if isinstance(extra, dict) else {}
        name = extra.get("name", "m") if isinstance(extra, dict) else "m"
        with pytest.raises(RuntimeError, match="a new server was started"):
            endpoint.start(tmp_path, archive, name, 6, **kwargs)
        assert stopped.pop() is True, change


def test_a_kept_endpoint_that_fails_the_smoke_request_is_replaced_by_a_fresh_one(tmp_path, monkeypatch):
    """A kept server can answer /ping and still be stuck: the run then starts a fresh one, as it would
    have without reuse, instead of failing."""
    from config import load_config
    from pipelines.local import endpoint
    from pipelines.local import run as local_run
    from pipelines.local.store import LocalStore

    calls: list[str] = []

    def start(root, archive, name, version, port=None, timeout=300.0, reuse=True):  # noqa: ANN001
        calls.append(f"start reuse={reuse}")
        return {"url": "http://127.0.0.1:9", "reused": reuse, "version": version}

    def invoke(url, messages, max_tokens):  # noqa: ANN001
        calls.append("smoke")
        if calls.count("smoke") == 1:
            raise endpoint.UserError("the smoke request timed out")
        return {"choices": [{"message": {"content": "1966-11-22"}}]}

    monkeypatch.setattr(endpoint, "start", start)
    monkeypatch.setattr(endpoint, "invoke", invoke)
    monkeypatch.setattr(endpoint, "stop", lambda root, timeout=30.0: calls.append("stop"))
    registered = {
        "ModelDataUrl": "s3://local-artifacts/x/model.tar.gz",
        "ModelPackageGroupName": "g",
        "ModelPackageVersion": 2,
    }
    state, smoke = local_run._serve(load_config(), LocalStore(tmp_path), registered, None)
    assert calls == ["start reuse=True", "smoke", "stop", "start reuse=False", "smoke"]
    assert state["reused"] is False and smoke["choices"][0]["message"]["content"] == "1966-11-22"
