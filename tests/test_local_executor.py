"""The local executor on hand-written definitions: order, references, conditions, Fail, caching, resume,
unsupported steps and parameter errors. The steps are tiny Python scripts run as processing jobs."""

import json
import sys
import textwrap

import pytest

from pipelines.definition.parameters import coerce_parameters
from pipelines.local.executor import (
    ExecutionFailed,
    Executor,
    ExecutorError,
    iso_duration_seconds,
    order_steps,
)
from pipelines.local.expressions import Context, ExpressionError, parse_path, resolve

STEP_SCRIPT = textwrap.dedent('''
    """A processing step for tests: records that it ran, reads its inputs, writes result.json."""
    import json, os, signal, sys
    from pathlib import Path

    name, counter, value = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])
    die_unless = os.environ.get("DIE_UNLESS")
    with counter.open("a") as f:
        f.write(name + "\\n")
    if die_unless and not Path(die_unless).exists():
        os.kill(os.getpid(), signal.SIGKILL)   # killed mid-step, as an OOM kill or a lost machine would
    root = Path(os.environ["MLOPS_OPT_ML"]) / "processing"
    inputs = {p.name: sorted(f.name for f in p.rglob("*") if f.is_file())
              for p in root.iterdir() if p.name != "out"} if root.exists() else {}
    out = root / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps({"value": value, "argv": sys.argv[1:], "inputs": inputs,
                                                  "nested": {"items": [{"x": value * 2}]}}))
    print(f"step {name} value={value}")
''')


def proc_step(name, value, counter, script, inputs=(), cache=True, die_unless=None, depends=()):
    args = [name, str(counter), value]
    step = {
        "Name": name,
        "Type": "Processing",
        "DisplayName": f"step {name}",
        "Arguments": {
            "AppSpecification": {
                "ImageUri": "img",
                "ContainerEntrypoint": ["python", str(script)],
                "ContainerArguments": args,
            },
            "ProcessingResources": {
                "ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 1}
            },
            "ProcessingInputs": [
                {
                    "InputName": n,
                    "S3Input": {
                        "S3Uri": uri,
                        "LocalPath": f"/opt/ml/processing/{n}",
                        "S3DataType": "S3Prefix",
                        "S3InputMode": "File",
                    },
                }
                for n, uri in inputs
            ],
            "ProcessingOutputConfig": {
                "Outputs": [
                    {
                        "OutputName": "out",
                        "S3Output": {
                            "S3Uri": {
                                "Std:Join": {
                                    "On": "/",
                                    "Values": ["s3://bucket", {"Get": "Execution.PipelineExecutionId"}, name],
                                }
                            },
                            "LocalPath": "/opt/ml/processing/out",
                            "S3UploadMode": "EndOfJob",
                        },
                    }
                ]
            },
            "Environment": {"DIE_UNLESS": str(die_unless)} if die_unless else {},
        },
        "PropertyFiles": [{"PropertyFileName": "Result", "OutputName": "out", "FilePath": "result.json"}],
    }
    if cache:
        step["CacheConfig"] = {"Enabled": True, "ExpireAfter": "P1D"}
    if depends:
        step["DependsOn"] = list(depends)
    return step


def out_uri(step):
    return {"Get": f"Steps.{step}.ProcessingOutputConfig.Outputs['out'].S3Output.S3Uri"}


def json_get(step, path):
    return {"Std:JsonGet": {"PropertyFile": {"Get": f"Steps.{step}.PropertyFiles.Result"}, "Path": path}}


@pytest.fixture
def env(tmp_path):
    script = tmp_path / "step.py"
    script.write_text(STEP_SCRIPT)
    return {"script": script, "counter": tmp_path / "ran.txt", "store": tmp_path / "store"}


def pipeline(env, threshold_default=1.0, die_unless=None):
    """A -> B (reads A's output and A's value) -> Gate(B.value >= Threshold) ? [C] : [Stop]."""
    s, c = env["script"], env["counter"]
    b = proc_step("B", {"Get": "Parameters.Value"}, c, s, inputs=[("a", out_uri("A"))], die_unless=die_unless)
    b["Arguments"]["AppSpecification"]["ContainerArguments"].append(json_get("A", "nested.items[0].x"))
    gate = {
        "Name": "Gate",
        "Type": "Condition",
        "Arguments": {
            "Conditions": [
                {
                    "Type": "GreaterThanOrEqualTo",
                    "LeftValue": json_get("B", "value"),
                    "RightValue": {"Get": "Parameters.Threshold"},
                }
            ],
            "IfSteps": [proc_step("C", "3", c, s, inputs=[("b", out_uri("B"))], cache=False)],
            "ElseSteps": [
                {
                    "Name": "Stop",
                    "Type": "Fail",
                    "Arguments": {
                        "ErrorMessage": {
                            "Std:Join": {
                                "On": "",
                                "Values": [
                                    "value ",
                                    json_get("B", "value"),
                                    " is below ",
                                    {"Get": "Parameters.Threshold"},
                                ],
                            }
                        }
                    },
                }
            ],
        },
    }
    return {
        "Version": "2020-12-01",
        "Parameters": [
            {"Name": "Value", "Type": "Float", "DefaultValue": 2.0},
            {"Name": "Threshold", "Type": "Float", "DefaultValue": threshold_default},
            {"Name": "Mode", "Type": "String", "DefaultValue": "a", "EnumValues": ["a", "b"]},
        ],
        # Listed out of order on purpose: the executor orders by dependency.
        "Steps": [gate, b, proc_step("A", "1", c, s)],
    }


def execute(env, definition, overrides=None, execution_id="e1", resume=False):
    params = coerce_parameters(definition, overrides or {})
    return Executor(definition, env["store"], "test-pipeline", params, execution_id).run(resume=resume)


def ran(env):
    return env["counter"].read_text().split() if env["counter"].exists() else []


def test_dependency_order_and_branches(env):
    assert order_steps(pipeline(env)) == ["A", "B", "Gate", "C", "Stop"]


def test_references_condition_true_runs_the_if_branch(env):
    report = execute(env, pipeline(env))
    assert ran(env) == ["A", "B", "C"]
    statuses = {s["name"]: s["status"] for s in report["steps"]}
    assert statuses == {"A": "done", "B": "done", "Gate": "done", "C": "done", "Stop": "skipped"}
    b_result = json.loads((env["store"] / "s3/bucket/e1/B/result.json").read_text())
    assert (
        b_result["argv"][2] == "2.0" and b_result["argv"][-1] == "2.0"
    )  # parameter, then JsonGet nested.items[0].x
    assert b_result["inputs"] == {"a": ["result.json"]}  # A's output, downloaded to B's LocalPath
    assert report["gates"]["Gate"] == {"passed": True, "detail": "true: 2.0 GreaterThanOrEqualTo 1.0"}
    assert (env["store"] / "runs/e1/logs/B.log").read_text().count("step B value=2.0") == 1


def test_condition_false_runs_fail_with_its_resolved_message(env):
    with pytest.raises(ExecutionFailed) as info:
        execute(env, pipeline(env), {"Threshold": "5"})
    assert info.value.step == "Stop" and info.value.by_fail_step
    assert info.value.message == "value 2.0 is below 5.0"
    report = json.loads(info.value.report.read_text())
    assert report["status"] == "Failed"
    assert {s["name"]: s["status"] for s in report["steps"]}["C"] == "skipped"
    assert ran(env) == ["A", "B"]


def test_cache_hit_then_miss_when_the_arguments_change(env):
    execute(env, pipeline(env), execution_id="e1")
    report = execute(env, pipeline(env), execution_id="e2")
    statuses = {s["name"]: s["status"] for s in report["steps"]}
    assert (
        statuses["A"] == "cached" and statuses["B"] == "cached" and statuses["C"] == "done"
    )  # C has no CacheConfig
    assert ran(env) == ["A", "B", "C", "C"]
    # A cache hit reuses the earlier execution's outputs, as SageMaker does.
    assert report["artifacts"]["B.out"] == "s3://bucket/e1/B"
    # A changed argument (the Value parameter feeds B) misses; A still hits.
    execute(env, pipeline(env), {"Value": "3"}, execution_id="e3")
    assert ran(env)[4:] == ["B", "C"]
    # Outputs gone from the store: no hit.
    import shutil

    shutil.rmtree(env["store"] / "s3/bucket/e1/A")
    execute(env, pipeline(env), execution_id="e4")
    assert ran(env)[6:] == ["A", "B", "C"]


def test_resume_after_a_killed_step_continues_from_the_first_unfinished_step(env, tmp_path):
    marker = tmp_path / "allow"
    definition = pipeline(env, die_unless=marker)
    with pytest.raises(ExecutionFailed) as info:
        execute(env, definition, execution_id="r1")
    assert info.value.step == "B" and not info.value.by_fail_step
    assert "exited with status -9" in info.value.message
    assert info.value.log is not None and info.value.log.exists()  # the failed step's log stays
    assert ran(env) == ["A", "B"]
    marker.touch()
    report = execute(env, definition, execution_id="r1", resume=True)
    assert ran(env) == ["A", "B", "B", "C"]  # A was not run again
    statuses = {s["name"]: (s["status"], s["message"]) for s in report["steps"]}
    assert statuses["A"] == ("done", "finished in an earlier attempt")
    with pytest.raises(ExecutorError, match="no execution nope to resume"):
        execute(env, definition, execution_id="nope", resume=True)
    with pytest.raises(ExecutorError, match="ran another pipeline definition"):
        execute(env, pipeline(env, threshold_default=0.5), execution_id="r1", resume=True)


def test_unsupported_step_type_is_refused_before_anything_runs(env):
    definition = pipeline(env)
    definition["Steps"].append({"Name": "Notify", "Type": "Lambda", "Arguments": {}})
    definition["Steps"][0]["Arguments"]["IfSteps"].append(
        {"Name": "Batch", "Type": "Transform", "Arguments": {}}
    )
    with pytest.raises(ExecutorError) as info:
        execute(env, definition)
    assert "cannot run step(s) Batch (Transform), Notify (Lambda)" in str(
        info.value
    ) or "cannot run step(s) Notify (Lambda), Batch (Transform)" in str(info.value)
    assert ran(env) == []


def test_a_missing_input_names_the_step_input_and_uri(env):
    definition = pipeline(env)
    definition["Steps"][2]["Arguments"]["ProcessingInputs"] = [
        {
            "InputName": "data",
            "S3Input": {"S3Uri": "s3://bucket/nothing/", "LocalPath": "/opt/ml/processing/data"},
        }
    ]
    with pytest.raises(ExecutionFailed, match=r"A: input 'data': no object at s3://bucket/nothing/"):
        execute(env, definition)


def test_expression_details():
    ctx = Context(
        parameters={"P": 1},
        execution={"PipelineExecutionId": "x"},
        properties={"S": {"Outputs": {"o": {"Uri": "s3://b/k"}}}},
    )
    assert parse_path("Outputs['o'].Uri") == ["Outputs", "o", "Uri"]
    assert parse_path("a.b[2].c") == ["a", "b", 2, "c"]
    assert (
        resolve(
            {
                "Std:Join": {
                    "On": "/",
                    "Values": [{"Get": "Steps.S.Outputs['o'].Uri"}, {"Get": "Parameters.P"}, True],
                }
            },
            ctx,
        )
        == "s3://b/k/1/true"
    )
    with pytest.raises(ExpressionError, match="Parameters.Q: no such parameter"):
        resolve({"Get": "Parameters.Q"}, ctx)
    with pytest.raises(ExpressionError, match="step 'T' has not run"):
        resolve({"Get": "Steps.T.X"}, ctx)
    with pytest.raises(ExpressionError, match=r"no 'Missing' \(have: o\)"):
        resolve({"Get": "Steps.S.Outputs['Missing']"}, ctx)
    assert iso_duration_seconds("P30D") == 30 * 86400 and iso_duration_seconds("PT12H") == 12 * 3600


def test_step_commands_use_this_interpreter_and_docker_argv_mounts_opt_ml(tmp_path):
    from pipelines.local.jobs import JobSpec, docker_argv, local_argv

    spec = JobSpec(
        "Prepare",
        "img:1",
        ["python", "-m", "containers.entrypoint", "prepare", "--x", "1"],
        {"A": "b"},
        tmp_path,
        network_isolated=True,
        extra_mounts={"/ck": "/opt/ml/checkpoints"},
    )
    assert local_argv(spec)[0] == sys.executable
    argv = docker_argv(spec)
    assert argv[:4] == ["docker", "run", "--rm", "--init"]  # signals reach the entrypoint (not PID 1)
    assert f"{tmp_path}:/opt/ml" in argv and "/ck:/opt/ml/checkpoints" in argv
    assert argv[argv.index("--network") + 1] == "none" and "A=b" in argv
    assert argv[-8:] == [
        "--entrypoint",
        "python",
        "img:1",
        "-m",
        "containers.entrypoint",
        "prepare",
        "--x",
        "1",
    ]


def test_local_store_paths_never_leave_the_store(tmp_path):
    from pipelines.local.store import LocalStore, StorePathError

    store = LocalStore(tmp_path)
    assert store.path("s3://b//etc/passwd") == tmp_path / "s3" / "b" / "etc" / "passwd"
    for bad in ("s3://../x", "s3://b/../../x", "s3:///key", "/local/file.jsonl", "s3://./k"):
        with pytest.raises(StorePathError, match="s3://"):
            store.path(bad)


def test_live_view_shows_log_lines_as_text_not_markup():
    import io

    from rich.console import Console

    from pipelines.local.executor import StepState
    from pipelines.local.view import StepView

    buffer = io.StringIO()
    with StepView(Console(file=buffer, force_terminal=True, width=200)) as view:
        view.on_change([StepState("Prepare", "Processing", "[rank0] Prepare", status="running")])
        view.on_line("Prepare", "extracting to [/opt/ml/processing/model] [/]")
    assert "[/opt/ml/processing/model]" in buffer.getvalue() and "[rank0] Prepare" in buffer.getvalue()


def test_local_image_uri_follows_the_code(tmp_path):
    from pipelines.local.store import code_fingerprint

    (tmp_path / "training").mkdir()
    (tmp_path / "training" / "a.py").write_text("x = 1\n")
    before = code_fingerprint(tmp_path)
    (tmp_path / "training" / "a.py").write_text("x = 2\n")
    assert code_fingerprint(tmp_path) != before


def test_endpoint_liveness_ignores_a_recycled_pid():
    import os

    from pipelines.local.endpoint import server_alive

    # This pytest process is not `containers.entrypoint serve`.
    assert server_alive({"pid": os.getpid()}) is False


def test_resume_requests_that_cannot_be_honoured_say_why(tmp_path):
    from config import load_config
    from pipelines.local.run import run_local
    from training.errors import UserError

    cfg = load_config(overrides=[f"local.store_dir={tmp_path}"])
    with pytest.raises(UserError, match=r"--resume '\.\./\.\./x': not a run id"):
        run_local(cfg, {}, resume="../../x")
    with pytest.raises(UserError, match=r"--resume 20260101-000000-abcd: no such local execution"):
        run_local(cfg, {}, resume="20260101-000000-abcd")
    (tmp_path / "runs" / "r1").mkdir(parents=True)
    (tmp_path / "runs" / "r1" / "state.json").write_text('{"parameters": {}}')
    with pytest.raises(UserError, match="continues an execution with its own parameters; drop --param"):
        run_local(cfg, {"MaxSteps": "3"}, resume="r1")


def test_the_store_is_private_to_its_user(tmp_path):
    """Data, models and mlflow.db live in the store: 0700, also when an older version made it 0755."""
    import os
    import stat

    from pipelines.local.store import private_store

    old = os.umask(0o022)
    try:
        fresh = private_store(tmp_path / "new" / ".mlops")
        opened = tmp_path / "old"
        opened.mkdir(mode=0o755)
        private_store(opened)
    finally:
        os.umask(old)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o700
    assert stat.S_IMODE(opened.stat().st_mode) == 0o700


def test_an_already_converted_base_model_is_reused_without_importing_torch(tmp_path):
    """A repeated `mlops run --local` finds the converted SmolLM2 folder at once: importing torch and
    transformers to learn that cost 8 s of the cached demo (issue 17)."""
    import subprocess
    from pathlib import Path

    (tmp_path / "config.json").write_text("{}")
    code = (
        "import sys; from pathlib import Path; from training.base_model import convert_gguf_to_hf; "
        f"assert convert_gguf_to_hf(Path('absent.gguf'), Path({str(tmp_path)!r})) == Path({str(tmp_path)!r}); "
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
