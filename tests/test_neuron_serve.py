"""The handover from `serve` to the vLLM Neuronx DLC's server, at its edges: the command and environment
built from a fake compiled artifact, the refusals, and the exec call. Nothing Neuron runs here."""

import json
import os

import pytest

from containers.entrypoint import serve_port
from inference import neuron_serve
from inference.neuron_serve import exec_neuron_server, is_neuron_artifact, missing_launcher, neuron_launch
from training.errors import UserError

SHAPES = {"batch_size": 4, "sequence_length": 2048, "tensor_parallel_size": 2}


@pytest.fixture
def artifact(tmp_path):
    """Laid out like `compile --target inf2` output (inference/compile.py: INF2_REQUIRED_FILES + report)."""
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    # optimum-neuron 0.4.5 NxDNeuronConfig names (compiled_shapes reads tp_degree).
    (folder / "neuron_config.json").write_text(
        json.dumps(
            {
                "batch_size": 4,
                "sequence_length": 2048,
                "tp_degree": 2,
                "torch_dtype": "bfloat16",
                "target": "trn1",
            }
        )
    )
    (folder / "compile_report.json").write_text(json.dumps({"target": "inf2", "dtype": "bfloat16", **SHAPES}))
    return folder


def test_argv_and_env_from_the_artifact(artifact):
    env = {"PATH": "/usr/bin", "HF_HOME": "/tmp/hf"}
    argv, child = neuron_launch(artifact, 8080, env)
    model = os.path.abspath(artifact)
    assert argv == [
        "optimum-cli",
        "neuron",
        "serve",
        "--port",
        "8080",
        "--model",
        model,
        "--batch_size",
        "4",
        "--sequence_length",
        "2048",
        "--tensor_parallel_size",
        "2",
    ]
    assert child == {
        "PATH": "/usr/bin",
        "HF_HOME": "/tmp/hf",
        "SM_ON_MODEL": model,
        "SM_ON_BATCH_SIZE": "4",
        "SM_ON_SEQUENCE_LENGTH": "2048",
        "SM_ON_TENSOR_PARALLEL_SIZE": "2",
    }
    assert env == {"PATH": "/usr/bin", "HF_HOME": "/tmp/hf"}  # the caller's mapping is left alone
    assert is_neuron_artifact(artifact) and not is_neuron_artifact(artifact.parent)


def test_port_from_sagemaker_bind_to_port_and_other_sm_on_settings_pass_through(artifact):
    env = {
        "SAGEMAKER_BIND_TO_PORT": "9001",
        "SM_ON_BATCH_SIZE": "4",
        "SM_ON_TASK": "generate",
        "SM_ON_ALLOW_NON_CACHED_MODEL": "",
        "SM_ON_MODEL": "/somewhere/else",
    }
    argv, child = neuron_launch(
        artifact, serve_port(env), env, served_model_name="my-model", extra_args=["--host", "0.0.0.0"]
    )
    assert argv[3:5] == ["--port", "9001"]
    assert child["SM_ON_MODEL"] == os.path.abspath(artifact)  # the artifact being served wins
    assert argv[5:] == [
        "--model",
        os.path.abspath(artifact),
        "--batch_size",
        "4",
        "--sequence_length",
        "2048",
        "--tensor_parallel_size",
        "2",
        "--allow_non_cached_model",
        "--served_model_name",
        "my-model",
        "--task",
        "generate",
        "--host",
        "0.0.0.0",
    ]
    # An explicit served name in the environment stands.
    argv, _ = neuron_launch(artifact, 8080, {"SM_ON_SERVED_MODEL_NAME": "env-name"}, served_model_name="flag")
    assert argv[argv.index("--served_model_name") + 1] == "env-name"


def test_disagreeing_shape_is_refused_naming_variable_and_compiled_value(artifact):
    with pytest.raises(UserError) as info:
        neuron_launch(artifact, 8080, {"SM_ON_BATCH_SIZE": "8", "SM_ON_TENSOR_PARALLEL_SIZE": "2"})
    message = str(info.value)
    assert "SM_ON_BATCH_SIZE='8' but the model was compiled with 4" in message
    assert "compile_report.json" in message and "TENSOR_PARALLEL" not in message
    assert "unset the variable" in message and "or set it to the compiled value" in message


def test_port_conflict_and_inconsistent_artifact_are_refused(artifact):
    with pytest.raises(UserError, match=r"SM_ON_PORT='8081' but this container must listen on 8080"):
        neuron_launch(artifact, 8080, {"SM_ON_PORT": "8081"})
    assert "--port" in neuron_launch(artifact, 8080, {"SM_ON_PORT": "8080"})[0][3:5]
    (artifact / "compile_report.json").write_text(json.dumps({"target": "inf2", **SHAPES, "batch_size": 1}))
    with pytest.raises(UserError, match=r"batch_size: compile_report.json says 1, neuron_config.json says 4"):
        neuron_launch(artifact, 8080, {})


def test_without_report_the_shapes_come_from_neuron_config(artifact):
    (artifact / "compile_report.json").unlink()
    argv, _ = neuron_launch(artifact, 8080, {})
    assert argv[-6:] == ["--batch_size", "4", "--sequence_length", "2048", "--tensor_parallel_size", "2"]
    with pytest.raises(UserError, match=r"read from neuron_config.json.*SM_ON_SEQUENCE_LENGTH='512'"):
        neuron_launch(artifact, 8080, {"SM_ON_SEQUENCE_LENGTH": "512"})
    (artifact / "neuron_config.json").write_text(json.dumps({"batch_size": 4}))
    with pytest.raises(UserError, match="lacks sequence_length, tensor_parallel_size"):
        neuron_launch(artifact, 8080, {})
    (artifact / "neuron_config.json").unlink()
    with pytest.raises(UserError, match="not a compiled Neuron artifact"):
        neuron_launch(artifact, 8080, {})


def test_missing_launcher_says_where_to_run(artifact, monkeypatch):
    execs = []
    monkeypatch.setattr(os, "execvpe", lambda *a: execs.append(a))
    monkeypatch.setattr(neuron_serve.shutil, "which", lambda name, path=None: None)
    monkeypatch.setattr(neuron_serve.importlib.util, "find_spec", lambda name: None)
    assert missing_launcher({"PATH": ""}) == ["`optimum-cli` on PATH", "vllm", "optimum-neuron"]
    with pytest.raises(UserError) as info:
        exec_neuron_server(artifact, 8080, {"PATH": ""})
    message = str(info.value)
    assert "lacks `optimum-cli` on PATH, vllm, optimum-neuron" in message
    assert "containers/Dockerfile.inference" in message and "`--target cpu`" in message
    assert execs == []


def test_exec_gets_the_built_argv_and_env(artifact, monkeypatch):
    monkeypatch.setattr(neuron_serve.shutil, "which", lambda name, path=None: f"/opt/bin/{name}")
    monkeypatch.setattr(neuron_serve.importlib.util, "find_spec", lambda name: object())
    calls = []

    def fake_exec(file, args, env):
        calls.append((file, args, env))
        raise SystemExit(0)  # execvpe never returns

    monkeypatch.setattr(os, "execvpe", fake_exec)
    env = {"PATH": "/opt/bin", "SAGEMAKER_BIND_TO_PORT": "8085"}
    expected = neuron_launch(artifact, 8085, env, served_model_name="m")
    with pytest.raises(SystemExit):
        exec_neuron_server(artifact, serve_port(env), env, served_model_name="m")
    assert calls == [("optimum-cli", expected[0], expected[1])]


def test_a_trn2_artifact_hands_over_the_same_way_and_its_target_comes_from_neuron_config(artifact):
    """compile --target trn2 writes target=trn2 into the report and optimum-neuron writes "trn2" into
    neuron_config.json; serve derives the same SM_ON_* from either (optimum-cli neuron serve then checks
    the target against the instance itself, optimum/commands/neuron/serve.py L144-146)."""
    from inference.neuron_serve import compiled_report

    trn2_shapes = {"batch_size": 32, "sequence_length": 4096, "tensor_parallel_size": 4}
    (artifact / "neuron_config.json").write_text(
        json.dumps({"batch_size": 32, "sequence_length": 4096, "tp_degree": 4, "target": "trn2"})
    )
    (artifact / "compile_report.json").write_text(json.dumps({"target": "trn2", **trn2_shapes}))
    argv, _ = neuron_launch(artifact, 8080, {})
    assert argv[-6:] == ["--batch_size", "32", "--sequence_length", "4096", "--tensor_parallel_size", "4"]
    (artifact / "compile_report.json").unlink()
    assert compiled_report(artifact)[0]["target"] == "trn2"
    (artifact / "neuron_config.json").write_text(json.dumps({**SHAPES, "tp_degree": 2, "target": "trn1"}))
    assert compiled_report(artifact)[0]["target"] == "inf2"
