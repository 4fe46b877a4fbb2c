"""compile's edges (settings, the inf2 path without the SDK, the artifact check) and the serving settings."""

import json

import pytest

from inference.compile import (
    CompileSettings,
    check_inf2_artifact,
    check_serving_env,
    compile_model,
    compiled_shapes,
    inf2_export_kwargs,
    serving_env,
)
from training.errors import UserError
from training.neuron_sdk import EXPORT_SDK, neuron_sdk_available

INF2_REPORT = {"target": "inf2", "batch_size": 4, "sequence_length": 2048, "tensor_parallel_size": 2}


def test_settings_errors_name_each_flag():
    with pytest.raises(UserError) as info:
        CompileSettings(
            target="gpu", batch_size=0, dtype="int8", sequence_length=64, max_new_tokens=64
        ).check()
    message = str(info.value)
    for needle in (
        "--target 'gpu': choose one of inf2, trn2, cpu",
        "--batch-size=0: must be > 0",
        "--dtype 'int8'",
        "--max-new-tokens=64 must be smaller than --sequence-length=64",
    ):
        assert needle in message


def test_inf2_without_the_sdk_says_where_to_run_it(tmp_path):
    assert neuron_sdk_available(EXPORT_SDK) is False
    (tmp_path / "m").mkdir()
    with pytest.raises(
        UserError, match=r"--target inf2 needs the Neuron SDK .* run `compile` in the training image"
    ):
        compile_model(tmp_path / "m", tmp_path / "out", CompileSettings(target="inf2"))


def test_output_must_differ_from_input(tmp_path):
    with pytest.raises(UserError, match="--output-dir must differ from --model-dir"):
        compile_model(tmp_path, tmp_path, CompileSettings(target="cpu"))


def test_inf2_export_kwargs_carry_the_static_shapes():
    kwargs = inf2_export_kwargs(
        CompileSettings(target="inf2", batch_size=8, sequence_length=1024, tensor_parallel_size=2)
    )
    assert kwargs == {
        "instance_type": "inf2",
        "batch_size": 8,
        "sequence_length": 1024,
        "tensor_parallel_size": 2,
    }


def test_inf2_artifact_check(tmp_path):
    settings = CompileSettings(target="inf2", batch_size=4, sequence_length=2048, tensor_parallel_size=2)
    with pytest.raises(
        RuntimeError,
        match="lacks config.json, neuron_config.json, model.pt, "
        "checkpoint/weights/tp0_sharded_checkpoint.safetensors, checkpoint/weights/tp1_sharded",
    ):
        check_inf2_artifact(tmp_path, settings)
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.pt").write_bytes(b"")
    (tmp_path / "checkpoint" / "weights").mkdir(parents=True)
    for rank in (0, 1):
        (tmp_path / "checkpoint" / "weights" / f"tp{rank}_sharded_checkpoint.safetensors").write_bytes(b"")
    (tmp_path / "neuron_config.json").write_text(
        json.dumps({"batch_size": 4, "sequence_length": 2048, "tp_degree": 2})
    )
    assert check_inf2_artifact(tmp_path, settings) == {
        "batch_size": 4,
        "sequence_length": 2048,
        "tensor_parallel_size": 2,
    }
    (tmp_path / "neuron_config.json").write_text(
        json.dumps({"batch_size": 1, "sequence_length": 2048, "tp_degree": 2})
    )
    with pytest.raises(
        RuntimeError, match=r"other shapes or target than requested: \{'batch_size': \(1, 4\)\}"
    ):
        check_inf2_artifact(tmp_path, settings)
    assert compiled_shapes({"seq_len": 7}) == {"sequence_length": 7}


def test_serving_env_comes_from_the_report_and_mismatches_are_refused():
    env = serving_env(INF2_REPORT)
    assert env == {
        "SM_ON_MODEL": "/opt/ml/model",
        "SM_ON_BATCH_SIZE": "4",
        "SM_ON_SEQUENCE_LENGTH": "2048",
        "SM_ON_TENSOR_PARALLEL_SIZE": "2",
    }
    check_serving_env(env, INF2_REPORT)
    with pytest.raises(UserError, match=r"SM_ON_BATCH_SIZE='8' but the model was compiled with 4"):
        check_serving_env({**env, "SM_ON_BATCH_SIZE": "8"}, INF2_REPORT)
    with pytest.raises(UserError, match="needs a compile report with target=inf2 or trn2, got target='cpu'"):
        serving_env({**INF2_REPORT, "target": "cpu"})
    assert serving_env({**INF2_REPORT, "target": "trn2"}) == env  # the same SM_ON_* for a trn2 artifact


def test_trn2_exports_for_trn2_with_the_target_set_before_optimum_neuron_is_imported():
    """optimum-neuron 0.4.5 on a CPU host compiles for trn1 unless told otherwise (utils/instance.py
    L85-91, __init__.py L26-32); the kwargs name the target and the environment carries it."""
    from inference.compile import export_environment

    trn2 = CompileSettings(target="trn2", batch_size=32, sequence_length=4096, tensor_parallel_size=4)
    assert inf2_export_kwargs(trn2) == {
        "instance_type": "trn2",
        "batch_size": 32,
        "sequence_length": 4096,
        "tensor_parallel_size": 4,
    }
    assert export_environment(trn2) == {"NEURON_PLATFORM_TARGET_OVERRIDE": "trn2"}
    # inf2 shares NeuronCore-v2 with trn1: optimum-neuron compiles it for "trn1" (INSTANCE_VALUE_MAP).
    assert export_environment(CompileSettings(target="inf2")) == {"NEURON_PLATFORM_TARGET_OVERRIDE": "trn1"}
    with pytest.raises(ValueError, match="no Neuron export for target 'cpu'"):
        inf2_export_kwargs(CompileSettings(target="cpu"))


def test_trn2_without_the_sdk_says_where_to_run_it(tmp_path):
    (tmp_path / "m").mkdir()
    with pytest.raises(UserError, match=r"--target trn2 needs the Neuron SDK"):
        compile_model(
            tmp_path / "m", tmp_path / "out", CompileSettings(target="trn2", tensor_parallel_size=4)
        )


def test_an_artifact_compiled_for_the_other_target_is_refused(tmp_path):
    """neuron_config.json's `target` is optimum-neuron's compilation target: trn1 for inf2, trn2 for trn2."""
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.pt").write_bytes(b"")
    (tmp_path / "checkpoint" / "weights").mkdir(parents=True)
    for rank in range(4):
        (tmp_path / "checkpoint" / "weights" / f"tp{rank}_sharded_checkpoint.safetensors").write_bytes(b"")
    shapes = {"batch_size": 4, "sequence_length": 2048, "tp_degree": 4}
    trn2 = CompileSettings(target="trn2", batch_size=4, sequence_length=2048, tensor_parallel_size=4)
    (tmp_path / "neuron_config.json").write_text(json.dumps({**shapes, "target": "trn2"}))
    assert check_inf2_artifact(tmp_path, trn2)["tensor_parallel_size"] == 4
    (tmp_path / "neuron_config.json").write_text(json.dumps({**shapes, "target": "trn1"}))
    with pytest.raises(
        RuntimeError, match=r"other shapes or target than requested: \{'target': \('trn1', 'trn2'\)\}"
    ):
        check_inf2_artifact(tmp_path, trn2)


def test_serve_limits_and_port_errors(tmp_path):
    from containers.entrypoint import serve_port
    from inference.server import load_limits

    assert serve_port({}) == 8080
    assert serve_port({"SAGEMAKER_BIND_TO_PORT": "9000"}) == 9000
    assert serve_port({"SAGEMAKER_BIND_TO_PORT": "9000"}, flag=7000) == 7000
    with pytest.raises(UserError, match=r"SAGEMAKER_BIND_TO_PORT='http' is not a TCP port"):
        serve_port({"SAGEMAKER_BIND_TO_PORT": "http"})
    (tmp_path / "serving_config.json").write_text(
        json.dumps({"limits": {"batch_size": 2, "sequence_length": 128, "max_new_tokens": 16}})
    )
    limits = load_limits(tmp_path, {"batch_size": None, "max_new_tokens": 32})
    assert (limits.batch_size, limits.sequence_length, limits.max_new_tokens) == (2, 128, 32)
    with pytest.raises(
        UserError,
        match=r"serving limits from .*serving_config.json \+ flags: max_new_tokens=128 must be smaller than sequence_length=128",
    ):
        load_limits(tmp_path, {"max_new_tokens": 128})
    (tmp_path / "serving_config.json").write_text("[]")
    with pytest.raises(UserError, match="not a serving config written by `compile --target cpu`"):
        load_limits(tmp_path, {})


def test_serving_a_neuron_artifact_here_is_refused(tmp_path, monkeypatch, capsys):
    """`serve` on an inf2 artifact hands over to the DLC's server; here that server is absent. An
    endpoint has no failure file (your-algorithms-inference-code.html): the reason goes to the log."""
    from containers.entrypoint import main

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "neuron_config.json").write_text(
        json.dumps({"batch_size": 4, "sequence_length": 2048, "tp_degree": 2})
    )
    (model / "compile_report.json").write_text(json.dumps(INF2_REPORT))
    monkeypatch.setenv("MLOPS_OPT_ML", str(tmp_path))

    def logged() -> str:
        out, err = capsys.readouterr()
        return out + err

    assert main(["serve"]) == 2
    assert (
        "is a compiled Neuron artifact; serving it needs the Hugging Face vLLM Neuronx container" in logged()
    )
    # Shape flags meet the compiled-shape check before anything is started.
    assert main(["serve", "--batch-size", "8"]) == 2
    assert "SM_ON_BATCH_SIZE='8' but the model was compiled with 4" in logged()
    assert main(["serve", "--max-new-tokens", "64"]) == 2
    assert "--max-new-tokens apply to the CPU/CUDA server only" in logged()
    assert not (tmp_path / "output").exists()


def test_inf2_report_carries_serving_env_and_provenance_and_archive_serves(
    tmp_path, monkeypatch, fake_inf2_export
):
    """Around the export: the report the pipeline reads with JsonGet, the archive SageMaker hosts, and
    the serve handover reading that archive as /opt/ml/model."""
    import tarfile

    from inference import compile as compile_module
    from inference.model_files import model_folder
    from inference.neuron_serve import neuron_launch

    monkeypatch.setattr(compile_module, "_compile_inf2", fake_inf2_export)
    merged = tmp_path / "merged"
    merged.mkdir()
    (merged / "training_report.json").write_text(json.dumps({"mlflow_run_id": "abc123"}))
    out = tmp_path / "compiled"
    settings = CompileSettings(target="inf2", batch_size=4, sequence_length=2048, tensor_parallel_size=2)
    report = compile_model(merged, out, settings, archive=True)

    assert report["serving_env"] == {
        "SM_ON_BATCH_SIZE": "4",
        "SM_ON_SEQUENCE_LENGTH": "2048",
        "SM_ON_TENSOR_PARALLEL_SIZE": "2",
    }
    assert report["provenance"]["mlflow_run_id"] == "abc123"
    assert report["provenance"]["optimum_neuron"] == "not installed"  # honest about this machine
    assert all(isinstance(v, str) for v in report["provenance"].values())  # package metadata takes strings
    assert sorted(p.name for p in out.iterdir()) == ["compile_report.json", "model.tar.gz"]
    with tarfile.open(out / "model.tar.gz") as tar:
        names = set(tar.getnames())
    assert {
        "config.json",
        "neuron_config.json",
        "model.pt",
        "compile_report.json",
        "checkpoint/weights/tp1_sharded_checkpoint.safetensors",
    } <= names

    # SageMaker extracts ModelDataUrl into /opt/ml/model; serve then hands over with the compiled shapes.
    served = model_folder(out, "--model-dir", extract_to=tmp_path / "opt_ml_model")
    argv, _ = neuron_launch(served, 8080, {})
    assert argv[-6:] == ["--batch_size", "4", "--sequence_length", "2048", "--tensor_parallel_size", "2"]


def test_provenance_without_a_training_report(tmp_path):
    from inference.compile import provenance

    assert provenance(tmp_path)["mlflow_run_id"] == "none"
    (tmp_path / "training_report.json").write_text("{broken")
    assert provenance(tmp_path)["mlflow_run_id"] == "none"


def test_completion_cap_is_checked_for_the_cpu_server_only():
    CompileSettings(target="inf2", sequence_length=128).check()  # vLLM takes max_tokens per request
    with pytest.raises(UserError, match="--max-new-tokens=256 must be smaller than --sequence-length=128"):
        CompileSettings(target="cpu", sequence_length=128).check()
