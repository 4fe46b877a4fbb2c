"""The container definitions, checked without Docker (none exists on our machines).

The Dockerfiles are parsed as text: base images must be pinned by an explicit tag whose versions agree
with the project's pins, every COPY source must exist and carry the shared entrypoint (plus every local
package that code imports, and no other), and both images must start through ``python -m containers.entrypoint``.
The base images' registry comes from ``project.region`` (the image assets' build argument, and the registry
``make dlc-login`` logs in to), and the training image holds one MLflow distribution.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT / "containers" / "Dockerfile.train"
INFERENCE = ROOT / "containers" / "Dockerfile.inference"
DOCKERFILES = {"train": TRAIN, "inference": INFERENCE}
ENTRYPOINT = ["python", "-m", "containers.entrypoint"]
NEURON_PIP_INDEX = "pip.repos.neuron.amazonaws.com"
# PyPI placeholders of these names exist; they may only come from the Neuron repository.
NEURON_ONLY_PACKAGES = ("torch-neuronx", "neuronx-cc", "neuronx-distributed", "libneuronxla")

# What each optimum-neuron release was built against (facts of the release, not project choices):
# huggingface/optimum-neuron v0.4.5 optimum/neuron/version.py (__sdk_version__ = "2.26.1") and
# pyproject.toml (`vllm` extra: vllm == 0.11.0). A new optimum-neuron pin needs a row here.
OPTIMUM_NEURON_STACK = {"0.4.5": {"sdk": "2.26.1", "vllm": "0.11.0"}}

# The tags aws/deep-learning-containers documents (commit e0ecedea6a1c, 2026-08-21), each file's `tags:` list:
# docs/src/data/huggingface-pytorch-training-neuronx/2.8-neuronx-sdk2.26.0.yml and
# docs/src/data/huggingface-vllm-inference-neuronx/0.11-neuronx-sdk2.26.1.yml. A new tag needs its file here.
DOCUMENTED_TAGS = {
    "huggingface-pytorch-training-neuronx": {"2.8.0-transformers4.55.4-neuronx-py310-sdk2.26.0-ubuntu22.04"},
    "huggingface-vllm-inference-neuronx": {"0.11.0-optimum0.4.5-neuronx-py310-sdk2.26.1-ubuntu22.04"},
}
BASE_REPOSITORY = {
    "train": "huggingface-pytorch-training-neuronx",
    "inference": "huggingface-vllm-inference-neuronx",
}

# huggingface-pytorch-training-neuronx:2.8.0-transformers4.55.4-neuronx-py310-sdk2.26.0-ubuntu22.04
TRAINING_TAG = re.compile(
    r"^(?P<torch>\d+\.\d+\.\d+)-transformers(?P<transformers>\d+(?:\.\d+)*)-neuronx-py(?P<py>\d+)"
    r"-sdk(?P<sdk>\d+(?:\.\d+)*)-ubuntu(?P<os>[\d.]+)$"
)
# huggingface-vllm-inference-neuronx:0.11.0-optimum0.4.5-neuronx-py310-sdk2.26.1-ubuntu22.04
VLLM_TAG = re.compile(
    r"^(?P<vllm>\d+(?:\.\d+)*)-optimum(?P<optimum>\d+(?:\.\d+)*)-neuronx-py(?P<py>\d+)"
    r"-sdk(?P<sdk>\d+(?:\.\d+)*)-ubuntu(?P<os>[\d.]+)$"
)


# --- a small Dockerfile reader ------------------------------------------------------------------


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with comments dropped and continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, rest = line.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    assert not pending, f"{path.name}: dangling line continuation"
    return out


def _words(args: str) -> list[str]:
    """Exec (JSON) form or shell form, as Docker reads COPY/ENTRYPOINT/CMD arguments."""
    if args.startswith("["):
        words = json.loads(args)
        assert isinstance(words, list) and all(isinstance(w, str) for w in words), args
        return words
    return shlex.split(args)


def _expand(text: str, values: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values.get(m.group(1) or m.group(2), m.group(0)), text)


def base_images(path: Path) -> list[str]:
    """FROM references with the defaults of ARGs declared before them substituted."""
    args: dict[str, str] = {}
    images = []
    for keyword, rest in instructions(path):
        if keyword == "ARG" and "=" in rest and not images:
            name, _, default = rest.partition("=")
            args[name.strip()] = default.strip().strip('"')
        elif keyword == "FROM":
            words = [w for w in rest.split() if not w.startswith("--")]
            images.append(_expand(words[0], args))
    return images


def split_image(reference: str) -> tuple[str, str | None]:
    """(repository, tag) of an image reference; the tag is None when absent."""
    name = reference.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if ":" not in last:
        return name, None
    repository, tag = name.rsplit(":", 1)
    return repository, tag


def tag_of(path: Path, repository_suffix: str) -> str:
    for image in base_images(path):
        repository, tag = split_image(image)
        if repository.endswith("/" + repository_suffix) and tag:
            return tag
    raise AssertionError(f"{path.name} has no FROM .../{repository_suffix}:<tag>")


def copies(path: Path) -> list[tuple[list[str], str]]:
    """(sources, destination) of every COPY/ADD from the build context (not from another stage)."""
    out = []
    for keyword, rest in instructions(path):
        if keyword not in ("COPY", "ADD"):
            continue
        words = _words(rest)
        flags = [w for w in words if w.startswith("--")]
        if any(f.startswith("--from") for f in flags):
            continue
        paths = [w for w in words if not w.startswith("--")]
        assert len(paths) >= 2, f"{path.name}: {keyword} {rest} needs a source and a destination"
        out.append((paths[:-1], paths[-1]))
    return out


def env_values(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for keyword, rest in instructions(path):
        if keyword == "ENV":
            for word in shlex.split(rest):
                name, sep, value = word.partition("=")
                assert sep, f"{path.name}: use ENV NAME=value, got {rest!r}"
                values[name] = value
    return values


def last(path: Path, keyword: str) -> list[str] | None:
    found = [rest for kw, rest in instructions(path) if kw == keyword]
    return _words(found[-1]) if found else None


def pins(lines: list[str]) -> dict[str, str]:
    out = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        req = Requirement(line)
        exact = [s.version for s in req.specifier if s.operator == "=="]
        if exact:
            out[req.name.lower()] = exact[0]
    return out


def requirements_train() -> dict[str, str]:
    return pins((ROOT / "containers" / "requirements-train.txt").read_text().splitlines())


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def major_minor(version: str) -> tuple[int, int]:
    release = Version(version).release
    return release[0], release[1]


# --- base images ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_base_images_are_pinned_by_explicit_tag(name):
    images = base_images(DOCKERFILES[name])
    assert images, f"Dockerfile.{name} has no FROM"
    for image in images:
        repository, tag = split_image(image)
        assert tag is not None, f"{image}: no tag (that means `latest`); pin the full DLC tag"
        assert tag != "latest", f"{image}: `latest` moves; pin the full DLC tag"
        assert "$" not in tag, f"{image}: the tag comes from a build arg, so a build can change it"
        assert "$" not in repository, f"{image}: an ARG used in FROM has no default"


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_base_image_tags_are_the_ones_aws_documents(name):
    repository = BASE_REPOSITORY[name]
    tag = tag_of(DOCKERFILES[name], repository)
    assert tag in DOCUMENTED_TAGS[repository], (
        f"Dockerfile.{name}: {repository}:{tag} is not a tag aws/deep-learning-containers documents "
        f"({sorted(DOCUMENTED_TAGS[repository])}); check docs/src/data/{repository}/ and update DOCUMENTED_TAGS"
    )


def test_training_base_matches_project_pins():
    tag = tag_of(TRAIN, "huggingface-pytorch-training-neuronx")
    m = TRAINING_TAG.match(tag)
    assert m, f"unexpected training DLC tag layout: {tag}"
    project = pyproject()

    # torch: pyproject's lower bound is the container's torch (2.8 + torch-neuronx); local runs may be newer.
    torch_req = next(
        Requirement(d) for d in project["project"]["dependencies"] if Requirement(d).name == "torch"
    )
    floors = [s.version for s in torch_req.specifier if s.operator in (">=", "==", "~=")]
    assert floors, "pyproject.toml must give torch a lower bound (the container's torch)"
    assert major_minor(m["torch"]) == major_minor(floors[0]), (
        f"training DLC has torch {m['torch']}, pyproject.toml says torch {torch_req.specifier}"
    )

    # transformers: the DLC's copy is replaced by requirements-train.txt's pin, which must not be older.
    pinned = requirements_train()["transformers"]
    assert Version(m["transformers"]) <= Version(pinned), (
        f"training DLC ships transformers {m['transformers']}, newer than our pin {pinned}: pip would downgrade it"
    )
    assert Version(m["transformers"]).major == Version(pinned).major

    # Python: container code must run on the DLC's interpreter, which is what ruff and requires-python target.
    assert f"py{m['py']}" == project["tool"]["ruff"]["target-version"]
    floor = next(
        s.version
        for s in Requirement("x" + project["project"]["requires-python"]).specifier
        if s.operator == ">="
    )
    assert "".join(map(str, major_minor(floor))) == m["py"]


def test_inference_base_matches_optimum_neuron_pin():
    tag = tag_of(INFERENCE, "huggingface-vllm-inference-neuronx")
    m = VLLM_TAG.match(tag)
    assert m, f"unexpected vLLM Neuronx DLC tag layout: {tag}"
    optimum = requirements_train()["optimum-neuron"]
    assert m["optimum"] == optimum, (
        f"serving DLC carries optimum-neuron {m['optimum']}, training image pins {optimum}: a compiled artifact "
        "is only loadable by the optimum-neuron and neuronx-cc versions that wrote it"
    )
    stack = OPTIMUM_NEURON_STACK.get(optimum)
    assert stack, f"add optimum-neuron {optimum}'s SDK and vLLM versions to OPTIMUM_NEURON_STACK"
    assert m["sdk"] == stack["sdk"], (
        f"optimum-neuron {optimum} is built for SDK {stack['sdk']}, tag says {m['sdk']}"
    )
    assert m["vllm"] == stack["vllm"], (
        f"optimum-neuron {optimum} pins vllm {stack['vllm']}, tag says {m['vllm']}"
    )
    assert f"py{m['py']}" == pyproject()["tool"]["ruff"]["target-version"]


def test_both_images_are_on_the_same_neuron_sdk_line():
    train = TRAINING_TAG.match(tag_of(TRAIN, "huggingface-pytorch-training-neuronx"))
    serve = VLLM_TAG.match(tag_of(INFERENCE, "huggingface-vllm-inference-neuronx"))
    assert train and serve
    sdk = OPTIMUM_NEURON_STACK[requirements_train()["optimum-neuron"]]["sdk"]
    assert major_minor(train["sdk"]) == major_minor(serve["sdk"]) == major_minor(sdk), (
        f"training DLC SDK {train['sdk']}, serving DLC SDK {serve['sdk']}, optimum-neuron wants {sdk}"
    )
    assert train["os"] == serve["os"] and train["py"] == serve["py"]


def test_training_image_installs_our_pins_from_the_neuron_repository():
    """requirements-train.txt is installed, and Neuron packages only ever come with the Neuron index."""
    requirement_dests = [
        dest for sources, dest in copies(TRAIN) if "containers/requirements-train.txt" in sources
    ]
    assert requirement_dests, "Dockerfile.train never copies containers/requirements-train.txt"
    runs = [rest for keyword, rest in instructions(TRAIN) if keyword == "RUN"]
    installs = [r for r in runs if "pip install" in r and any(f"-r {d}" in r for d in requirement_dests)]
    assert installs, "no RUN pip-installs -r <copied requirements-train.txt>"
    for run in runs:
        wants_neuron = "[neuronx]" in run or any(
            re.search(rf"(?<![\w-]){p}\b", run) for p in NEURON_ONLY_PACKAGES
        )
        if "pip install" in run and wants_neuron:
            index = _expand(run, _arg_defaults(TRAIN))
            assert NEURON_PIP_INDEX in index, f"Neuron packages requested without the Neuron index: {run}"


def _arg_defaults(path: Path) -> dict[str, str]:
    out = {}
    for keyword, rest in instructions(path):
        if keyword == "ARG" and "=" in rest:
            name, _, default = rest.partition("=")
            out[name.strip()] = default.strip().strip('"')
    return out


# --- code in the image ---------------------------------------------------------------------------


def _local_packages() -> set[str]:
    return {p.parent.name for p in ROOT.glob("*/__init__.py")}


def _copied_files(path: Path) -> dict[Path, str]:
    """Repository files the Dockerfile copies, mapped to where they land in the image."""
    out: dict[Path, str] = {}
    for sources, dest in copies(path):
        for source in sources:
            src = ROOT / source
            assert src.exists(), f"{path.name}: COPY source {source} does not exist in the repository"
            if src.is_dir():
                for f in src.rglob("*"):
                    if f.is_file() and "__pycache__" not in f.parts:
                        out[f] = f"{dest.rstrip('/')}/{f.relative_to(src).as_posix()}"
            else:
                out[src] = f"{dest.rstrip('/')}/{src.name}" if dest.endswith("/") else dest
    return out


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_copied_paths_exist_and_carry_the_entrypoint(name):
    files = _copied_files(DOCKERFILES[name])
    entry = ROOT / "containers" / "entrypoint.py"
    assert entry in files, f"Dockerfile.{name} does not copy containers/entrypoint.py"
    # Packages keep their names in the image (COPY of a directory copies its contents, not the folder).
    for sources, dest in copies(DOCKERFILES[name]):
        for source in sources:
            if (ROOT / source).is_dir() and (ROOT / source / "__init__.py").is_file():
                assert dest.rstrip("/").endswith("/" + Path(source).name), (
                    f"COPY {source} {dest} flattens the package; copy it to <root>/{Path(source).name}"
                )


def _copied_packages(files: dict[Path, str]) -> set[str]:
    return {
        f.relative_to(ROOT).parts[0]
        for f in files
        if f.name == "__init__.py" and len(f.relative_to(ROOT).parts) == 2
    }


def _imported_local_packages(files: dict[Path, str]) -> dict[str, str]:
    """Local packages the copied Python files import from outside themselves (lazy imports too), each with
    one file importing it."""
    local = _local_packages()
    imported: dict[str, str] = {}
    for f in files:
        if f.suffix != ".py":
            continue
        for node in ast.walk(ast.parse(f.read_text(), filename=str(f))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for top in {n.split(".")[0] for n in names} & local - {f.relative_to(ROOT).parts[0]}:
                imported.setdefault(top, str(f.relative_to(ROOT)))
    return imported


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_every_local_package_the_copied_code_imports_is_copied(name):
    files = _copied_files(DOCKERFILES[name])
    copied = _copied_packages(files)
    missing = {top: f for top, f in _imported_local_packages(files).items() if top not in copied}
    assert not missing, f"Dockerfile.{name} lacks packages the copied code imports: {missing}"


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_no_package_is_copied_that_the_code_does_not_import(name):
    """A package in the image that no image code imports (e.g. config/) only changes the image hash,
    and with it every pipeline step's cache key, whenever it is edited."""
    files = _copied_files(DOCKERFILES[name])
    started = ENTRYPOINT[-1].split(".")[0]  # `python -m containers.entrypoint` needs no importer
    unused = _copied_packages(files) - set(_imported_local_packages(files)) - {started}
    assert not unused, f"Dockerfile.{name} copies packages no image code imports: {sorted(unused)}"


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_entrypoint_is_the_shared_one_and_importable(name):
    path = DOCKERFILES[name]
    assert last(path, "ENTRYPOINT") == ENTRYPOINT, f"Dockerfile.{name} must start {' '.join(ENTRYPOINT)}"
    # `python -m containers.entrypoint` resolves through PYTHONPATH: the folder holding containers/ is on it.
    landing = _copied_files(path)[ROOT / "containers" / "entrypoint.py"]
    package_root = landing.rsplit("/", 2)[0]
    pythonpath = [p for p in _drop_references(env_values(path).get("PYTHONPATH", "")).split(":") if p]
    workdirs = [rest for kw, rest in instructions(path) if kw == "WORKDIR"]
    assert package_root in pythonpath or (workdirs and workdirs[-1] == package_root), (
        f"containers/ lands in {package_root}, which is neither on PYTHONPATH ({pythonpath}) nor the WORKDIR"
    )


def _drop_references(value: str) -> str:
    """The literal part of an ENV value: `/opt/mlops${PYTHONPATH:+:${PYTHONPATH}}` -> `/opt/mlops`."""
    while True:
        stripped = re.sub(r"\$\{[^{}]*\}|\$\w+", "", value)
        if stripped == value:
            return value
        value = stripped


def test_inference_image_serves_by_default():
    assert last(INFERENCE, "CMD") == ["serve"]


@pytest.mark.parametrize(
    ("name", "commands"), [("inference", ["serve"]), ("train", ["train", "evaluate", "compile"])]
)
def test_image_commands_exist_in_the_entrypoint(name, commands, capsys):
    """The commands each image is started with are real subcommands of containers.entrypoint."""
    from containers.entrypoint import main

    default = last(DOCKERFILES[name], "CMD")
    for command in commands + (default or []):
        with pytest.raises(SystemExit) as exc:
            main([command, "--help"])
        assert exc.value.code == 0, f"`{command}` is not a containers.entrypoint command"
    capsys.readouterr()


def test_the_build_context_holds_exactly_what_the_images_copy():
    # A folder in the context that no image copies still changes the asset hash, the image URI and
    # with it every pipeline step's cache key (a price-table refresh would rerun the whole pipeline).
    from infra.images import CONTEXT_EXCLUDES

    kept = {entry[1:].split("/")[0] for entry in CONTEXT_EXCLUDES if entry.startswith("!")}
    copied = {
        Path(source).parts[0]
        for path in DOCKERFILES.values()
        for sources, _ in copies(path)
        for source in sources
    }
    assert kept == copied


# --- the base images' registry: a build argument from project.region, and `make dlc-login` ---------


def _raw_from(path: Path) -> str:
    (found,) = [rest.split()[-1] for keyword, rest in instructions(path) if keyword == "FROM"]
    return found


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_the_base_image_registry_is_the_build_argument_the_assets_pass(name):
    from infra.dlc_registry import DLC_REGISTRY_ARG, dlc_registry

    path = DOCKERFILES[name]
    assert _raw_from(path).startswith(f"${{{DLC_REGISTRY_ARG}}}/"), (
        f"Dockerfile.{name} must start FROM ${{{DLC_REGISTRY_ARG}}}/...: infra/images.py passes the registry "
        "of project.region under that name"
    )
    # The default only serves a manual build; it must still be a real registry (the us-east-1 row).
    assert _arg_defaults(path)[DLC_REGISTRY_ARG] == dlc_registry("us-east-1")


def _synth_images(tmp_path: Path, region: str) -> dict:
    from aws_cdk import App, Environment, Stack

    from infra.images import ContainerImages

    app = App(outdir=str(tmp_path))
    stack = Stack(app, "Images", env=Environment(account="111111111111", region=region))
    ContainerImages(stack, "Images", repo_root=ROOT, parameter_prefix="/test")
    app.synth()
    return json.loads((tmp_path / "Images.assets.json").read_text())["dockerImages"]


def test_image_assets_build_from_the_dlc_registry_of_the_configured_region(tmp_path):
    # eu-south-1 is an opt-in region whose DLC account is not 763104351884 (region_availability.md).
    images = _synth_images(tmp_path, "eu-south-1")
    dockerfiles = {image["source"]["dockerFile"] for image in images.values()}
    assert dockerfiles == {"containers/Dockerfile.train", "containers/Dockerfile.inference"}
    for image in images.values():
        assert image["source"]["dockerBuildArgs"] == {
            "DLC_REGISTRY": "692866216735.dkr.ecr.eu-south-1.amazonaws.com"
        }


def test_a_region_without_a_dlc_registry_is_a_config_error_naming_project_region(tmp_path):
    from config import ConfigError

    with pytest.raises(ConfigError, match=r"project\.region: 'us-gov-west-1' has no AWS Deep Learning"):
        _synth_images(tmp_path, "us-gov-west-1")


def test_cdk_synth_reports_errors_in_one_line(tmp_path, monkeypatch):
    """`python app.py` (what `cdk synth` runs) turns a config error, or a user error raised while the
    stacks are built (a job SageMaker would refuse), into one `error:` line, not a traceback."""
    import app
    from pipelines.definition.service_rules import ServiceRuleError

    monkeypatch.setenv("MLOPS_CONFIG", _config_for(tmp_path, "us-gov-west-1")["MLOPS_CONFIG"])
    with pytest.raises(SystemExit) as exc:
        app.main()
    assert str(exc.value).startswith("error: ") and "project.region: 'us-gov-west-1'" in str(exc.value)

    def refused(cfg):
        raise ServiceRuleError("FineTune: SageMaker would refuse this job: ...")

    monkeypatch.delenv("MLOPS_CONFIG")
    monkeypatch.setattr(app, "build_app", refused)
    with pytest.raises(SystemExit, match="^error: FineTune: SageMaker would refuse this job"):
        app.main()


def _config_for(tmp_path: Path, region: str) -> dict[str, str]:
    """The environment of a `make dlc-login` run whose config (MLOPS_CONFIG, as app.py reads) names ``region``."""
    config = tmp_path / "region.yaml"
    config.write_text(f"project:\n  region: {region}\ninfra:\n  availability_zones: [{region}a, {region}b]\n")
    return {**os.environ, "MLOPS_CONFIG": str(config)}


def _dlc_login_command(flags: str) -> list[str]:
    """The command `make dlc-login` runs, as `make -n` prints it (nothing is run)."""
    out = subprocess.run(
        ["make", "-n", "dlc-login", f"DLC_LOGIN_FLAGS={flags}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    (line,) = [line for line in out.splitlines() if "scripts/dlc_login.py" in line]
    words = shlex.split(line)
    assert words[0] == ".venv/bin/python", line
    return [sys.executable, *words[1:]]


def test_make_dlc_login_logs_in_to_the_registry_of_project_region(tmp_path):
    proc = subprocess.run(
        _dlc_login_command("--dry-run"),
        cwd=ROOT,
        env=_config_for(tmp_path, "eu-south-1"),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == (
        "aws ecr get-login-password --region eu-south-1 | "
        "docker login --username AWS --password-stdin 692866216735.dkr.ecr.eu-south-1.amazonaws.com"
    )


def test_dlc_login_refuses_a_region_without_a_dlc_registry(tmp_path):
    proc = subprocess.run(
        _dlc_login_command("--dry-run"),
        cwd=ROOT,
        env=_config_for(tmp_path, "us-gov-west-1"),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "project.region: 'us-gov-west-1'" in proc.stderr and proc.stdout == ""


def _fake_tool(folder: Path, name: str, body: str) -> None:
    tool = folder / name
    tool.write_text(f"#!/bin/sh\n{body}\n")
    tool.chmod(0o755)


def test_dlc_login_pipes_the_ecr_token_into_docker_login(tmp_path):
    """The real run, against stand-ins for `aws` and `docker` that record what they were given."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _fake_tool(bin_dir, "aws", f'echo "$@" > {tmp_path}/aws.args; echo secret-token')
    _fake_tool(bin_dir, "docker", f'echo "$@" > {tmp_path}/docker.args; cat > {tmp_path}/docker.stdin')
    env = {**_config_for(tmp_path, "ap-east-1"), "PATH": f"{bin_dir}:/usr/bin:/bin"}
    proc = subprocess.run(_dlc_login_command(""), cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "aws.args").read_text().split() == [
        "ecr",
        "get-login-password",
        "--region",
        "ap-east-1",
    ]
    assert (tmp_path / "docker.args").read_text().split() == [
        "login",
        "--username",
        "AWS",
        "--password-stdin",
        "871362719292.dkr.ecr.ap-east-1.amazonaws.com",
    ]
    assert (tmp_path / "docker.stdin").read_text().strip() == "secret-token"


def test_dlc_login_says_which_tool_is_missing_and_runs_nothing(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _fake_tool(bin_dir, "aws", f"touch {tmp_path}/aws.ran")
    env = {**_config_for(tmp_path, "us-east-1"), "PATH": str(bin_dir)}
    proc = subprocess.run(_dlc_login_command(""), cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 2
    assert "`docker` is not on PATH" in proc.stderr and "`aws`" not in proc.stderr.split("Install it")[0]
    assert "docker login --username AWS --password-stdin 763104351884.dkr.ecr.us-east-1.amazonaws.com" in (
        proc.stderr
    )
    assert not (tmp_path / "aws.ran").exists()


# --- MLflow: one distribution of the `mlflow` import package in the training image ---------------------


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _mlflow_distributions() -> set[str]:
    """Every distribution that writes the import package `mlflow`, read from the installed wheels' metadata
    (this venv has full mlflow, which brings mlflow-skinny and mlflow-tracing)."""
    from importlib.metadata import packages_distributions

    found = {_normalized(d) for d in packages_distributions().get("mlflow", [])}
    assert {"mlflow", "mlflow-skinny"} <= found, f"expected full mlflow and mlflow-skinny here, found {found}"
    return found


def _install_run_commands() -> list[str]:
    """The `&&`-separated commands of the RUN that installs requirements-train.txt."""
    runs = [
        rest for keyword, rest in instructions(TRAIN) if keyword == "RUN" and "requirements-train.txt" in rest
    ]
    assert len(runs) == 1, runs
    return [command.strip() for command in runs[0].split("&&")]


def test_the_dlcs_mlflow_is_uninstalled_before_the_one_pinned_distribution_is_installed():
    pinned = set(requirements_train()) & _mlflow_distributions()
    assert len(pinned) == 1, (
        f"requirements-train.txt must pin exactly one of {_mlflow_distributions()}: {pinned}"
    )
    commands = _install_run_commands()
    install = next(i for i, c in enumerate(commands) if "pip install" in c and "requirements-train.txt" in c)
    uninstalled = {
        _normalized(word)
        for command in commands[:install]
        if "pip uninstall" in command
        for word in shlex.split(command)
        if not word.startswith("-") and word not in ("python", "pip", "uninstall")
    }
    rivals = _mlflow_distributions() - pinned
    assert rivals <= uninstalled, (
        f"Dockerfile.train installs {pinned} without first uninstalling {sorted(rivals - uninstalled)}, which "
        "the base DLC may ship: two distributions would write one `mlflow` package"
    )


def _owner_check() -> str:
    """The Python snippet the training image runs after installing, to fail the build on a mixed install."""
    for command in _install_run_commands():
        words = shlex.split(command)
        if "packages_distributions" in command and words[:2] == ["python", "-c"]:
            return words[2]
    raise AssertionError("Dockerfile.train does not check who provides `mlflow` after installing")


def _fake_site(folder: Path, *distributions: str) -> Path:
    for name in distributions:
        info = folder / f"{name.replace('-', '_')}-3.17.2.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 3.17.2\n")
        (info / "RECORD").write_text("mlflow/__init__.py,,\n")
    return folder


@pytest.mark.parametrize(
    ("installed", "passes"),
    [(["mlflow-skinny"], True), (["mlflow", "mlflow-skinny", "mlflow-tracing"], False), ([], False)],
)
def test_the_build_fails_unless_mlflow_skinny_alone_provides_mlflow(tmp_path, installed, passes):
    site = _fake_site(tmp_path / "site", *installed)
    # -S: no site-packages, so importlib.metadata sees only the fake distributions on PYTHONPATH.
    proc = subprocess.run(
        [sys.executable, "-S", "-c", _owner_check()],
        cwd=tmp_path,
        env={"PYTHONPATH": str(site), "PATH": os.environ.get("PATH", "")},
        capture_output=True,
        text=True,
    )
    assert (proc.returncode == 0) is passes, proc.stderr
    if not passes:
        assert "exactly one distribution, mlflow-skinny" in proc.stderr
