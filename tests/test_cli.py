"""The ``mlops`` root: the one error boundary (what each kind of error prints, and its exit status),
``--debug``, and the messages of commands that exist only locally or only in the cloud."""

import pytest
from typer.testing import CliRunner

from pipelines.cli.app import app

runner = CliRunner()


@pytest.fixture
def store(tmp_path):
    return ["--set", f"local.store_dir={tmp_path / 'store'}"]


def mlops(*args):
    return runner.invoke(app, list(args), env={"COLUMNS": "300"})


@pytest.mark.parametrize(
    "args, message",
    [
        (["run"], "error: only `mlops run --local` exists; in the cloud, start the deployed pipeline"),
        (
            ["train"],
            "error: only `mlops train --local` exists; cloud training runs through the SageMaker pipeline",
        ),
        (
            ["endpoint", "stop"],
            "error: only `mlops endpoint stop --local` exists; a cloud endpoint is managed",
        ),
        (
            ["ui"],
            "error: only `mlops ui --local` exists; the managed MLflow server opens from SageMaker Studio",
        ),
        (["pipeline", "start", "--param", "MaxSteps"], "error: --param 'MaxSteps': expected Name=value"),
        (
            ["pipeline", "start", "--param", "MaxStep=3"],
            "error: pipeline parameters: --param MaxStep: no such parameter",
        ),
        (  # the whole fine-tune is checked before any AWS call, as a local run checks it
            ["pipeline", "start", "--set", "training.warmup_steps=5", "--param", "MaxSteps=3"],
            "warmup_steps (5) must be smaller than max_steps (3)",
        ),
        (  # a config value that looks like rich markup is printed, not interpreted
            ["config", "validate", "--set", "project.name=x[/bold]"],
            "(got 'x[/bold]')",
        ),
    ],
)
def test_user_errors_are_one_line_with_exit_2(args, message):
    result = mlops(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_config_errors_list_the_key_and_exit_2():
    result = mlops("config", "validate", "--set", "training.max_steps=zero")
    assert result.exit_code == 2
    assert "error:" in result.output and "training.max_steps" in result.output


def test_nothing_there_is_stated_on_stdout_with_exit_1(store):
    result = mlops("pipeline", "status", "--local", *store)
    assert result.exit_code == 1 and "no local pipeline run: `mlops run --local`" in result.stdout
    result = mlops("endpoint", "status", "--local", *store)
    assert (
        result.exit_code == 1
        and "no local endpoint is running (start one with `mlops run --local`)" in result.stdout
    )


def test_debug_adds_the_traceback():
    assert "Traceback" not in mlops("run").output
    debug = mlops("--debug", "run")
    assert debug.exit_code == 2 and "Traceback" in debug.output and "UserError" in debug.output


def test_a_bug_is_not_dressed_up_as_a_user_error(monkeypatch):
    def broken(cfg, local):
        raise RuntimeError("a bug")

    monkeypatch.setattr("pipelines.cli.pipeline.platform", broken)
    result = mlops("pipeline", "status", "--local")
    assert isinstance(result.exception, RuntimeError)


def test_ui_local_needs_a_local_store(store):
    result = mlops("ui", "--local", *store)
    assert result.exit_code == 2 and "no local MLflow store at" in result.output
    assert "run `mlops run --local` first" in result.output
    off = mlops("ui", "--local", "--set", "local.mlflow=off", *store)
    assert off.exit_code == 2 and "local.mlflow='off': local runs track nothing" in off.output


def test_ui_local_serves_on_loopback_only(store, tmp_path, monkeypatch):
    db = tmp_path / "store" / "mlflow.db"
    db.parent.mkdir()
    db.touch()
    calls = []
    monkeypatch.setattr("subprocess.call", lambda argv: calls.append(argv) or 0)
    result = mlops("ui", "--local", "--port", "5123", *store)
    assert result.exit_code == 0 and "MLflow UI on the local store: http://127.0.0.1:5123" in result.output
    (argv,) = calls
    assert argv[argv.index("--host") + 1] == "127.0.0.1" and argv[argv.index("--port") + 1] == "5123"
    assert argv[argv.index("--backend-store-uri") + 1] == f"sqlite:///{db.resolve()}"


def test_a_reply_that_is_not_a_chat_completion_is_shown_not_a_traceback(monkeypatch, store):
    # The local twin: the server answered JSON of another shape.
    from pipelines.local import endpoint as local_endpoint

    monkeypatch.setattr(local_endpoint, "read_state", lambda root: {"url": "http://127.0.0.1:1"})
    monkeypatch.setattr(local_endpoint, "invoke", lambda url, messages, max_tokens: {"error": "overloaded"})
    result = mlops("endpoint", "invoke", "--local", "--prompt", "hi", *store)
    assert result.exit_code == 2
    assert (
        'endpoint http://127.0.0.1:1 answered something that is not an OpenAI chat completion: \'{"error": "overloaded"}\''
        in result.output
    )


def test_a_cloud_reply_that_is_not_json_shows_its_raw_body(monkeypatch):
    import io

    from pipelines.operate import cloud

    class Runtime:
        def invoke_endpoint(self, **kwargs):
            return {"Body": io.BytesIO(b"<html>502 Bad Gateway</html>")}

    monkeypatch.setattr(cloud, "clients", lambda cfg: {"sagemaker-runtime": Runtime()})
    result = mlops("endpoint", "invoke", "--prompt", "hi")
    assert result.exit_code == 2
    assert (
        "answered something that is not an OpenAI chat completion: b'<html>502 Bad Gateway</html>'"
        in result.output
    )
