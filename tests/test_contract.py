"""The twin is no kinder than SageMaker: a local job gets exactly the files and environment the
container contract lists (containers/contract.py, with the doc page of each), and nothing from the
developer's shell beyond the allowlist."""

import json
import sys
from pathlib import Path

import pytest
from neuron_stand_ins import neuron_ls_json, stand_in_tool

from containers.contract import (
    PASSTHROUGH,
    PROCESSING_JOB,
    ROOT_ENV,
    TRAINING,
    OptMl,
)
from pipelines.local.jobs import JobFailed, processing_job, run_job, training_job
from pipelines.local.store import LocalStore
from training.errors import UserError

# What the job process sees: its environment and every file under its /opt/ml, as JSON on stdout.
DUMP = (
    "import json, os, pathlib; root = pathlib.Path(os.environ['MLOPS_OPT_ML']); "
    "print('DUMP ' + json.dumps({'env': dict(os.environ), "
    "'files': sorted(str(p.relative_to(root)) for p in root.rglob('*') if p.is_file())}))"
)


def dump_of(log: Path) -> dict:
    line = next(line for line in log.read_text().splitlines() if line.startswith("DUMP "))
    return json.loads(line[len("DUMP ") :])


def process_env(seen: dict) -> set[str]:
    # Python itself may add LC_CTYPE when it coerces a C locale to UTF-8 (PEP 538); it is not ours.
    return set(seen["env"]) - {"LC_CTYPE"}


@pytest.fixture
def noisy_shell(monkeypatch):
    """A developer shell full of things SageMaker never gives a job."""
    for key, value in {
        "SM_NUM_NEURONS": "32",
        "SM_CHANNEL_TRAIN": "/somewhere/else",
        "AWS_PROFILE": "dev",
        "HF_TOKEN": "secret",
        "PYTHONPATH": "/tmp/extra",
        "OMP_NUM_THREADS": "2",
    }.items():
        monkeypatch.setenv(key, value)


def training_args(store: LocalStore) -> dict:
    store.path("s3://data/train/a.jsonl").parent.mkdir(parents=True)
    store.path("s3://data/train/a.jsonl").write_text('{"prompt": "p", "completion": "c"}\n')
    return {
        "AlgorithmSpecification": {"TrainingImage": "img:1", "TrainingInputMode": "File"},
        "ResourceConfig": {"InstanceCount": 1, "InstanceType": "ml.trn1.2xlarge", "VolumeSizeInGB": 50},
        "HyperParameters": {"max_steps": "3"},
        "InputDataConfig": [
            {
                "ChannelName": "train",
                "DataSource": {"S3DataSource": {"S3Uri": "s3://data/train", "S3DataType": "S3Prefix"}},
            }
        ],
        "Environment": {"PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"},
        "OutputDataConfig": {"S3OutputPath": "s3://out/models"},
    }


def test_a_local_training_job_gets_exactly_the_contract(tmp_path, noisy_shell):
    store = LocalStore(tmp_path / "store")
    args = training_args(store)
    spec = training_job("FineTune", args, tmp_path / "job", store, "exec-1-FineTune")
    spec.command = ["python", "-c", DUMP]
    run_job(spec, tmp_path / "job.log", docker=False)
    seen = dump_of(tmp_path / "job.log")

    shell = {k for k in PASSTHROUGH if k in __import__("os").environ}
    assert process_env(seen) == shell | set(args["Environment"]) | set(TRAINING.env) | {ROOT_ENV}
    assert seen["env"]["TRAINING_JOB_NAME"] == "exec-1-FineTune"
    assert seen["env"]["TRAINING_JOB_ARN"].endswith(":training-job/exec-1-FineTune")
    assert "SM_NUM_NEURONS" not in seen["env"] and "HF_TOKEN" not in seen["env"]
    assert set(seen["files"]) == {*TRAINING.files, "input/data/train/a.jsonl"}

    opt_ml = OptMl(tmp_path / "job")
    assert json.loads(opt_ml.resource_config_file(TRAINING).read_text()) == {
        "current_host": "algo-1",
        "hosts": ["algo-1"],
        "current_instance_type": "ml.trn1.2xlarge",
        "network_interface_name": "eth0",
    }
    assert json.loads(opt_ml.input_data_config_file.read_text()) == {
        "train": {
            "TrainingInputMode": "File",
            "S3DistributionType": "FullyReplicated",
            "RecordWrapperType": "None",
        }
    }
    # SM_CHANNEL_TRAIN in the shell changes nothing: channels are where SageMaker puts them.
    assert opt_ml.input_data("train") == tmp_path / "job" / "input" / "data" / "train"


def processing_args(store: LocalStore) -> dict:
    store.path("s3://data/in/x.txt").parent.mkdir(parents=True)
    store.path("s3://data/in/x.txt").write_text("x")
    return {
        "AppSpecification": {"ImageUri": "img:1", "ContainerEntrypoint": ["python", "-c", DUMP]},
        "ProcessingResources": {
            "ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.xlarge", "VolumeSizeInGB": 30}
        },
        "ProcessingInputs": [
            {
                "InputName": "data",
                "S3Input": {"S3Uri": "s3://data/in", "LocalPath": "/opt/ml/processing/data"},
            }
        ],
        "ProcessingOutputConfig": {
            "Outputs": [
                {
                    "OutputName": "out",
                    "S3Output": {"S3Uri": "s3://out/p", "LocalPath": "/opt/ml/processing/out"},
                }
            ]
        },
        "Environment": {"PYTHONUNBUFFERED": "1"},
        "RoleArn": "arn:aws:iam::000000000000:role/job",
    }


def test_a_local_processing_job_gets_exactly_the_contract(tmp_path, noisy_shell):
    store = LocalStore(tmp_path / "store")
    args = processing_args(store)
    spec, outputs = processing_job("Prepare", args, tmp_path / "job", store, "exec-1-Prepare")
    run_job(spec, tmp_path / "job.log", docker=False)
    seen = dump_of(tmp_path / "job.log")

    shell = {k for k in PASSTHROUGH if k in __import__("os").environ}
    assert process_env(seen) == shell | set(args["Environment"]) | {ROOT_ENV}
    assert set(seen["files"]) == {*PROCESSING_JOB.files, "processing/data/x.txt"}
    config = json.loads(OptMl(tmp_path / "job").processing_job_config_file.read_text())
    assert config["ProcessingJobName"] == "exec-1-Prepare"
    assert config["ProcessingResources"] == args["ProcessingResources"]
    assert [o[2] for o in outputs] == ["out"]


def test_a_processing_failure_is_read_from_output_message(tmp_path):
    """SageMaker shows a processing job's /opt/ml/output/message as its ExitMessage (byoc-metadata.html);
    a reason left in output/failure would be lost, so the twin reads only the message file."""
    store = LocalStore(tmp_path / "store")
    args = processing_args(store)
    args["AppSpecification"]["ContainerEntrypoint"] = [
        *__import__("containers.contract").contract.ENTRYPOINT,
        "evaluate",
    ]
    spec, _ = processing_job("Evaluate", args, tmp_path / "job", store, "exec-1-Evaluate")
    with pytest.raises(JobFailed) as failed:
        run_job(spec, tmp_path / "job.log", docker=False)
    message = tmp_path / "job" / "output" / "message"
    assert message.is_file() and not (tmp_path / "job" / "output" / "failure").exists()
    assert failed.value.reason == message.read_text().strip()


def test_a_multi_instance_job_is_refused_locally_not_run_as_one(tmp_path):
    from pipelines.local.jobs import JobSetupError

    store = LocalStore(tmp_path / "store")
    args = training_args(store)
    args["ResourceConfig"]["InstanceCount"] = 2
    with pytest.raises(JobSetupError, match="InstanceCount=2.*--param TrainInstanceCount=1"):
        training_job("FineTune", args, tmp_path / "job", store, "exec-1-FineTune")


def test_a_garbage_resource_config_is_named(tmp_path):
    opt_ml = OptMl(tmp_path)
    opt_ml.resource_config_file(TRAINING).parent.mkdir(parents=True)
    opt_ml.resource_config_file(TRAINING).write_text("{")
    with pytest.raises(UserError, match="resourceconfig.json: not valid JSON"):
        opt_ml.read_cluster(TRAINING)
    opt_ml.resource_config_file(TRAINING).write_text('{"current_host": "algo-3", "hosts": ["algo-1"]}')
    with pytest.raises(UserError, match="current_host 'algo-3' is not one of hosts"):
        opt_ml.read_cluster(TRAINING)


# ---- the neuron launch path, as far as this machine allows --------------------------------------------


def neuron_job_folder(root: Path, hosts: list[str], current: str) -> None:
    opt_ml = OptMl(root)
    opt_ml.write_hyperparameters({"backend": "neuron", "tensor_parallel_size": "8"})
    (opt_ml.input_data("train")).mkdir(parents=True)
    (opt_ml.input_data("train") / "a.jsonl").write_text('{"prompt": "p", "completion": "c"}\n')
    (opt_ml.input_data("model")).mkdir(parents=True)
    # A Llama's config.json: the launcher checks the family and the LoRA targets before torchrun.
    from transformers import LlamaConfig

    tiny = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=8)
    tiny.architectures = ["LlamaForCausalLM"]
    tiny.save_pretrained(opt_ml.input_data("model"))
    opt_ml.resource_config_file(TRAINING).write_text(
        json.dumps({"current_host": current, "hosts": hosts, "current_instance_type": "ml.trn1.32xlarge"})
    )


@pytest.mark.parametrize(
    ("hosts", "current", "expected"),
    [
        (["algo-1"], "algo-1", ["--nproc_per_node=32", "--nnodes=1"]),
        (
            ["algo-1", "algo-2"],
            "algo-2",
            [
                "--nproc_per_node=32",
                "--nnodes=2",
                "--node_rank=1",
                "--master_addr=algo-1",
                "--master_port=7777",
            ],
        ),
    ],
)
def test_the_train_entrypoint_builds_torchrun_from_resourceconfig_and_neuron_ls(
    tmp_path, monkeypatch, hosts, current, expected
):
    """`containers.entrypoint train` with backend=neuron under the contract environment (no SM_* at all),
    a stand-in `neuron-ls` listing a trn1.32xlarge's 16 devices and a stand-in `torchrun` that records
    its arguments. Only the SDK import check is patched: the SDK cannot be installed here."""
    from containers import entrypoint
    from training import backends

    root = tmp_path / "opt_ml"
    neuron_job_folder(root, hosts, current)
    tools = tmp_path / "bin"
    stand_in_tool(tools, "neuron-ls", f"echo '{neuron_ls_json(16)}'\n")
    stand_in_tool(tools, "torchrun", f'echo "$@" > {tmp_path}/torchrun.args\n')
    spec_env = {"PATH": f"{tools}:/usr/bin:/bin", ROOT_ENV: str(root), "TRAINING_JOB_NAME": "j"}
    for key in list(__import__("os").environ):
        monkeypatch.delenv(key)
    for key, value in spec_env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr("training.neuron_sdk.neuron_sdk_available", lambda *a: True)
    monkeypatch.setattr(backends, "neuron_devices_present", lambda *a: True)

    assert entrypoint.main(["train"]) == 0
    argv = (tmp_path / "torchrun.args").read_text().split()
    assert argv[: len(expected)] == expected
    assert argv[len(expected) :] == ["-m", "containers.entrypoint", "train", "--neuron-worker"]


def test_without_the_sdk_the_neuron_entrypoint_names_the_sdk_not_a_variable(tmp_path):
    """On this machine (no Neuron SDK, no device), the real job process fails on what is missing."""
    import subprocess

    root = tmp_path / "opt_ml"
    neuron_job_folder(root, ["algo-1"], "algo-1")
    env = {"PATH": "/usr/bin:/bin", ROOT_ENV: str(root), "TRAINING_JOB_NAME": "j"}
    done = subprocess.run(
        [sys.executable, "-m", "containers.entrypoint", "train"],
        env=env,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert done.returncode == 2
    reason = (root / "output" / "failure").read_text()
    assert "Neuron SDK" in reason and "SM_" not in reason


def test_a_multi_host_job_never_trains_each_node_alone(tmp_path, monkeypatch):
    from containers import entrypoint

    root = tmp_path / "opt_ml"
    neuron_job_folder(root, ["algo-1", "algo-2"], "algo-1")
    OptMl(root).write_hyperparameters({"backend": "torch"})
    monkeypatch.setenv(ROOT_ENV, str(root))
    assert entrypoint.main(["train"]) == 2
    assert "2 instances, but backend=torch trains on one" in (root / "output" / "failure").read_text()
