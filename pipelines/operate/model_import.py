"""``mlops model import``: a base model from the Hugging Face Hub or a local folder, checked, and stored
under a content-addressed prefix, ``base-models/<name>/<sha256>/``, of the data bucket (or of the
local store's data bucket).

What is stored is exactly the files a fine-tune and a Neuron compile read: the safetensors weights (and
their shard index), ``config.json``, ``generation_config.json`` and the tokenizer files. Pickled weights
(``.bin``, ``.pt``) are never downloaded nor uploaded: loading a pickle runs code of the pickle's
choosing. The sha256 is :func:`training.fingerprints.folder_sha256` of those files, the same hash the
fine-tune computes over its ``model`` channel, so the prefix names the content the job will see.

The files stay where they are (the Hub cache, the user's folder): a temporary folder of links names
the chosen ones, and both the hash and the upload read through it.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pydantic import ValidationError

from config.loader import yaml_load
from config.schema import ArchitectureSection, ProjectConfig
from pipelines.operate.aws_errors import AwsError, explained
from training.errors import UserError
from training.files import write_text_atomic
from training.fingerprints import folder_sha256
from training.neuron_sdk import check_model_family

# The files of a save_pretrained() folder that loading and compiling read. Pickles are left out on
# purpose (see the module's docstring); so is anything in a subfolder (Meta's `original/*.pth`).
ALLOW_PATTERNS = [
    "*.safetensors",
    "*.safetensors.index.json",
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
]
IGNORE_PATTERNS = ["*/*"]
# Any one of these is a tokenizer transformers can load as a fast one (the fine-tune needs a fast one).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")
PICKLE_PATTERNS = ["*.bin", "*.pt", "*.pth", "*.pkl", "*.ckpt"]

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
# A Hub repo id: `name` or `owner/name` (huggingface_hub's validate_repo_id allows [\w.-] in each part).
HUB_ID = re.compile(r"[\w][\w.-]*(/[\w][\w.-]*)?")
CONFIG_KEY = "pipeline.base_model_s3_uri"
LOCAL_DATA_BUCKET = "local-data"  # pipelines/local/store.py local_placeholder_values: DataBucket


class UploadProgress(Protocol):
    """What the upload reports while it works (the CLI shows a bar on a terminal, lines otherwise)."""

    def begin(self, files: int, total_bytes: int) -> None: ...

    def advance(self, transferred: int) -> None:
        """Bytes sent since the last call; boto3 calls it from its transfer threads."""

    def file_done(self, name: str, size: int) -> None: ...


class NoProgress:
    def begin(self, files: int, total_bytes: int) -> None:
        pass

    def advance(self, transferred: int) -> None:
        pass

    def file_done(self, name: str, size: int) -> None:
        pass


@dataclass(frozen=True)
class Imported:
    name: str
    sha256: str
    architecture: str
    # model.architecture for `mlops plan`: the schema's keys, as the model's config.json gives them
    shape: dict[str, Any]
    stored_at: str  # where the files are: s3://<the bucket's real name>/base-models/<name>/<sha>/
    config_value: str  # for pipeline.base_model_s3_uri: the same prefix, with ${DataBucket}
    files: int
    bytes: int
    copied: bool  # False: the prefix already held exactly these files


# ---- the source: a Hub repo or a folder --------------------------------------------------------------


def is_local(source: str) -> bool:
    """A folder when it exists or is written as a path; else a Hub id (``owner/name``)."""
    path = Path(source).expanduser()
    return path.exists() or source.startswith(("/", ".", "~")) or not HUB_ID.fullmatch(source)


def default_name(source: str) -> str:
    # resolve(): `.` and `./` have no name of their own (Path('.').name == ''); the folder they mean has.
    return Path(source).expanduser().resolve().name if is_local(source) else source.rsplit("/", 1)[-1]


def check_name(name: str) -> str:
    if not NAME.fullmatch(name) or name.strip(".") == "":
        raise UserError(
            f"--name {name!r}: not usable as an S3 key segment; use letters, digits, '.', '_' and '-', "
            "starting with a letter or digit (e.g. --name Llama-3.1-8B-Instruct)"
        )
    return name


def hub_snapshot(repo_id: str, revision: str | None) -> Path:
    """The repo's safetensors, config and tokenizer files, downloaded into the Hugging Face cache
    (a second import of the same revision downloads nothing)."""
    import huggingface_hub
    from huggingface_hub import errors

    where = f"{repo_id}" + (f" at revision {revision!r}" if revision else "")
    try:
        # snapshot_download filters the repo's files with fnmatch on allow_patterns, then ignore_patterns
        # (huggingface_hub/_snapshot_download.py, utils/_paths.py filter_repo_objects).
        folder = huggingface_hub.snapshot_download(
            repo_id=repo_id,
            revision=revision,
            allow_patterns=ALLOW_PATTERNS,
            ignore_patterns=IGNORE_PATTERNS,
            # None lets huggingface_hub fall back to the token of `hf auth login`.
            token=os.environ.get("HF_TOKEN") or None,
        )
    # GatedRepoError is a RepositoryNotFoundError: it must be caught first.
    except errors.GatedRepoError:
        raise UserError(
            f"{where} is a gated model: accept its license on https://huggingface.co/{repo_id} with your "
            "account, then set HF_TOKEN to a token of that account (https://huggingface.co/settings/tokens) "
            "and retry"
        ) from None
    except errors.RepositoryNotFoundError:
        token = (
            "HF_TOKEN is set, but its account cannot see it"
            if os.environ.get("HF_TOKEN")
            else ("if it is private, set HF_TOKEN to a token that can read it")
        )
        raise UserError(
            f"no Hugging Face Hub repo {repo_id!r}: check the id (owner/name, as on huggingface.co); {token}. "
            f"If you meant a local folder, there is none at {Path(repo_id).resolve()}"
        ) from None
    except errors.RevisionNotFoundError:
        raise UserError(
            f"{repo_id} has no revision {revision!r}: give a branch, tag or commit of the repo with "
            "--revision (or leave it out for main)"
        ) from None
    except (errors.LocalEntryNotFoundError, errors.OfflineModeIsEnabled) as exc:
        raise UserError(
            f"cannot download {where} from the Hugging Face Hub and it is not in the local cache: check the "
            f"network (and HF_HUB_OFFLINE, HF_ENDPOINT), or download the folder elsewhere and import it ({exc})"
        ) from None
    except errors.HFValidationError as exc:
        raise UserError(
            f"{repo_id!r} is not a Hub repo id (owner/name) nor an existing folder: {exc}"
        ) from None
    except errors.HfHubHTTPError as exc:
        raise UserError(f"the Hugging Face Hub refused {where}: {exc}") from None
    return Path(folder)


def _matches(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in patterns)


def model_files(folder: Path, described: str, pretrained: str) -> list[Path]:
    """The top-level files of ``folder`` worth importing; refuses a folder that is no safetensors
    model. ``described`` names the source in messages (the folder, or the Hub repo); ``pretrained`` is
    the from_pretrained() arguments that load the whole source, for the conversion command."""
    if not folder.exists():
        raise UserError(f"{folder}: no such folder; give a save_pretrained() folder or a Hub id (owner/name)")
    if not folder.is_dir():
        raise UserError(f"{folder}: not a folder; give the folder that holds config.json and the weights")
    present = sorted(p for p in folder.iterdir() if p.is_file())
    if not any(p.name == "config.json" for p in present):
        raise UserError(
            f"{described}: no config.json, so this is not a Hugging Face model folder; import the folder "
            "that save_pretrained() wrote (config.json, *.safetensors, tokenizer files)"
        )
    chosen = [p for p in present if _matches(p.name, ALLOW_PATTERNS)]
    if not any(p.name.endswith(".safetensors") for p in chosen):
        raise UserError(_no_safetensors(described, pretrained, [p.name for p in present]))
    _check_shards(folder, described, {p.name for p in chosen})
    if not {p.name for p in chosen} & set(TOKENIZER_FILES):
        raise UserError(
            f"{described}: no tokenizer ({' or '.join(TOKENIZER_FILES)}); the fine-tune tokenizes with the "
            "base model's own tokenizer: save it into the folder too (tokenizer.save_pretrained(folder))"
        )
    return chosen


def from_pretrained_args(source: str, revision: str | None) -> str:
    """How from_pretrained() loads the whole source: the Hub id (and revision) for a Hub repo, whose
    cached snapshot holds no pickles (they were never downloaded); the folder otherwise."""
    if revision:
        return f"{source!r}, revision={revision!r}"
    return repr(source)


def _no_safetensors(described: str, pretrained: str, names: list[str]) -> str:
    pickles = [name for name in names if _matches(name, PICKLE_PATTERNS)]
    convert = (
        "Convert it on a machine you trust (loading a pickle runs any code it holds): "
        'python -c "from transformers import AutoModelForCausalLM, AutoTokenizer; '
        f"AutoModelForCausalLM.from_pretrained({pretrained}).save_pretrained('converted', "
        f"safe_serialization=True); AutoTokenizer.from_pretrained({pretrained}).save_pretrained('converted')\""
        ", then import ./converted"
    )
    if pickles:
        return (
            f"{described} holds only pickled weights ({', '.join(pickles[:3])}), no *.safetensors; pickles "
            f"run code when loaded, so they are not imported. {convert}"
        )
    return (
        f"{described}: no *.safetensors weights (only safetensors are imported; pickled .bin/.pt weights "
        f"run code when loaded). If the model exists only as pickles: {convert}"
    )


def _check_shards(folder: Path, described: str, names: set[str]) -> None:
    """A sharded checkpoint's index names every shard: a missing one fails loading much later."""
    for index in sorted(n for n in names if n.endswith(".safetensors.index.json")):
        try:
            weight_map = json.loads((folder / index).read_text(encoding="utf-8"))["weight_map"]
            shards = set(weight_map.values())
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise UserError(f"{folder / index}: not a safetensors index with a weight_map ({exc})") from None
        missing = sorted(shards - names)
        if missing:
            raise UserError(
                f"{described}: {index} names shard(s) that are not there: {', '.join(missing[:5])}; "
                "copy or download the whole folder again"
            )


def read_config(config_path: Path) -> dict[str, Any]:
    text = config_path.read_text(encoding="utf-8")
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{config_path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(config, dict):
        raise UserError(
            f"{config_path}: expected a JSON object (a model config), found {type(config).__name__}"
        )
    return config


def check_architecture(config: dict[str, Any], config_path: Path) -> str:
    """The model's class, when the fine-tune and the Neuron compile both take it; a UserError otherwise.
    The family rules (which model_types, Qwen3 without sliding window) are training/neuron_sdk.py's,
    the ones training and compiling apply later; here only that the checkpoint is that family's causal LM."""
    where = str(config_path)
    expected = check_model_family(config, where, "training")
    check_model_family(config, where, "inference")
    architectures = config.get("architectures") or []
    if expected not in architectures and architectures:
        raise UserError(
            f"{where}: architectures {architectures} is not supported; a {config['model_type']} model is "
            f"fine-tuned and compiled as {expected}: import the causal-LM checkpoint of that model"
        )
    return expected


def architecture_shape(config: dict[str, Any], config_path: Path) -> dict[str, Any]:
    """``model.architecture`` (config/schema.py ArchitectureSection) as ``config`` gives it: what `mlops plan`
    sizes memory and FLOPs from. A key config.json leaves out takes the value transformers gives it for the
    family (a Llama without num_key_value_heads has as many as heads), except head_dim, which is then left
    out: the planner derives it from hidden_size / num_attention_heads, as transformers does."""
    from transformers import CONFIG_MAPPING

    try:
        resolved = CONFIG_MAPPING[config["model_type"]].from_dict(config)
    except (TypeError, ValueError, KeyError) as exc:
        raise UserError(f"{config_path}: transformers cannot read this model config ({exc})") from None
    shape = {
        key: getattr(resolved, key)
        for key in ArchitectureSection.model_fields
        if key != "head_dim" or config.get("head_dim") is not None
    }
    try:
        return ArchitectureSection.model_validate(shape).model_dump(exclude_none=True)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise UserError(
            f"{config_path}: the model's shape is outside what model.architecture takes ({problems})"
        ) from None


# ---- the content, staged as links --------------------------------------------------------------------


@contextlib.contextmanager
def staged(files: list[Path]) -> Iterator[Path]:
    """A temporary folder holding a link to each file, under its own name: what is hashed and stored."""
    with tempfile.TemporaryDirectory(prefix="mlops-import-") as tmp:
        folder = Path(tmp)
        for file in files:
            (folder / file.name).symlink_to(file.resolve())
        yield folder


def data_bucket(cfg: ProjectConfig, account: str) -> str:
    """The data bucket's name: infra/names.py PlatformNames.bucket("data"), as the foundation stack
    creates it (infra/foundation.py)."""
    return f"{cfg.project.name}-data-{account}-{cfg.project.region}"


def prefix_of(name: str, sha256: str) -> str:
    return f"base-models/{name}/{sha256}/"


# ---- the import --------------------------------------------------------------------------------------


def import_model(
    cfg: ProjectConfig,
    source: str,
    *,
    name: str | None = None,
    revision: str | None = None,
    local: bool = False,
    progress: UploadProgress | None = None,
    s3: Any = None,
) -> Imported:
    """Fetch, check, hash and store the model; ``s3`` is a boto3 S3 client (tests hand in moto's)."""
    name = check_name(name or default_name(source))
    if is_local(source):
        if revision:
            raise UserError(f"--revision {revision!r} applies to a Hub id; {source!r} is a local folder")
        folder = Path(source).expanduser().resolve()
        described = str(folder)
        pretrained = from_pretrained_args(str(folder), None)
    else:
        folder = hub_snapshot(source, revision)
        described = f"Hub repo {source}" + (f"@{revision}" if revision else "")
        pretrained = from_pretrained_args(source, revision)
    files = model_files(folder, described, pretrained)
    config = read_config(folder / "config.json")
    architecture = check_architecture(config, folder / "config.json")
    shape = architecture_shape(config, folder / "config.json")
    with staged(files) as content:
        sha256 = folder_sha256(content)
        prefix = prefix_of(name, sha256)
        size = sum(f.stat().st_size for f in files)
        if local:
            stored_at, copied = _publish_local(cfg, content, f"s3://{LOCAL_DATA_BUCKET}/{prefix}")
        else:
            stored_at, copied = _upload(cfg, content, prefix, progress or NoProgress(), s3)
    return Imported(
        name=name,
        sha256=sha256,
        architecture=architecture,
        shape=shape,
        stored_at=stored_at,
        config_value="s3://${DataBucket}/" + prefix,
        files=len(files),
        bytes=size,
        copied=copied,
    )


def _publish_local(cfg: ProjectConfig, content: Path, uri: str) -> tuple[str, bool]:
    from pipelines.local.store import LocalStore, private_store

    store = LocalStore(private_store(Path(cfg.local.store_dir).resolve()))
    if _same_local(store.path(uri), content):
        return uri, False
    store.publish(content, uri)
    return uri, True


def _same_local(stored: Path, content: Path) -> bool:
    if not stored.is_dir():
        return False
    have = {p.name: p.stat().st_size for p in stored.iterdir() if p.is_file()}
    return have == {p.name: p.stat().st_size for p in content.iterdir()}


def _upload(
    cfg: ProjectConfig, content: Path, prefix: str, progress: UploadProgress, s3: Any
) -> tuple[str, bool]:
    region = cfg.project.region
    with explained(region):
        if s3 is None:
            import boto3

            s3 = boto3.Session(region_name=region).client("s3")
        account = cfg.project.account or _caller_account(region)
        bucket = data_bucket(cfg, account)
        _check_bucket(s3, bucket, region)
        files = sorted(content.iterdir(), key=_upload_order)
        wanted = {f"{prefix}{f.name}": f.stat().st_size for f in files}
        if _listed(s3, bucket, prefix) == wanted:
            return f"s3://{bucket}/{prefix}", False
        progress.begin(len(files), sum(wanted.values()))
        for file in files:
            # upload_file streams the file, in parallel parts above its multipart threshold, and calls
            # Callback with the bytes sent since the last call (boto3/s3/transfer.py, S3Transfer.upload_file).
            s3.upload_file(str(file), bucket, f"{prefix}{file.name}", Callback=progress.advance)
            progress.file_done(file.name, wanted[f"{prefix}{file.name}"])
    return f"s3://{bucket}/{prefix}", True


def _upload_order(file: Path) -> tuple[bool, str]:
    """config.json last: an interrupted upload leaves a prefix that no loader takes for a model."""
    return (file.name == "config.json", file.name)


def _caller_account(region: str) -> str:
    import boto3

    return str(boto3.Session(region_name=region).client("sts").get_caller_identity()["Account"])


def _check_bucket(s3: Any, bucket: str, region: str) -> None:
    from botocore.exceptions import ClientError

    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as exc:
        # HeadBucket has no body, so a missing bucket is only the status code 404 (S3 API reference,
        # HeadBucket: "404 Not Found" when the bucket does not exist).
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchBucket", "NotFound"):
            raise AwsError(
                f"the data bucket {bucket} does not exist: deploy the platform first (`cdk deploy --all`), or "
                f"check project.name, project.account and project.region ({region}) in the config"
            ) from exc
        raise


def _listed(s3: Any, bucket: str, prefix: str) -> dict[str, int]:
    listed: dict[str, int] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        listed.update({item["Key"]: item["Size"] for item in page.get("Contents", [])})
    return listed


# ---- the config override -----------------------------------------------------------------------------


def write_override(path: Path, uri: str, shape: dict[str, Any]) -> None:
    """Set ``pipeline.base_model_s3_uri`` and ``model.architecture`` in the YAML override ``path`` (created
    if missing), keeping its other keys; written atomically. Comments are not kept (PyYAML does not read
    them). ``model.architecture`` is replaced whole: keys of a model imported before (its head_dim) must
    not stay beside this one's."""
    import yaml

    data: Any = {}
    if path.exists():
        try:
            data = yaml_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise UserError(f"--write-override {path}: not valid YAML ({exc}); fix or remove it") from None
        except OSError as exc:
            raise UserError(f"--write-override {path}: cannot be read ({exc.strerror or exc})") from None
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("pipeline", {}), dict)
        or not isinstance(data.get("model", {}), dict)
    ):
        raise UserError(
            f"--write-override {path}: expected a YAML mapping with `pipeline:` and `model:` mappings, as "
            "config overrides are; give another file"
        )
    mode = path.stat().st_mode & 0o777 if path.exists() else None
    data.setdefault("pipeline", {})["base_model_s3_uri"] = uri
    data.setdefault("model", {})["architecture"] = dict(shape)
    write_text_atomic(path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    if mode is not None:
        path.chmod(mode)  # write_text_atomic creates 0600; an existing file keeps its mode
