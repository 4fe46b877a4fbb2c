import re
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
PINNED = ("transformers", "peft", "trl", "accelerate")


def _pins(lines):
    out = {}
    for line in lines:
        m = re.match(r"^\s*([A-Za-z0-9_.-]+)==([^\s;#]+)", line)
        if m:
            out[m.group(1).lower()] = m.group(2)
    return out


def test_pyproject_pins_match_container_requirements():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    ours = _pins(project)
    container = _pins((ROOT / "containers" / "requirements-train.txt").read_text().splitlines())
    for name in PINNED:
        assert name in ours, f"{name} must be pinned with == in pyproject.toml"
        assert ours[name] == container.get(name), (
            f"{name}: pyproject {ours[name]} != container {container.get(name)}"
        )


def test_the_training_images_mlflow_client_is_in_the_range_local_runs_use():
    """The fine-tune logs with mlflow-skinny in the cloud and mlflow locally: same major line, one API."""
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (local,) = [Requirement(r) for r in project if Requirement(r).name == "mlflow"]
    container = _pins((ROOT / "containers" / "requirements-train.txt").read_text().splitlines())
    assert local.specifier.contains(container["mlflow-skinny"]), (
        container["mlflow-skinny"],
        str(local.specifier),
    )
    assert "sagemaker-mlflow" in container
