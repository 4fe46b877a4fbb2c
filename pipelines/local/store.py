"""The local stand-in for S3 and for the deploy-time values: ``.mlops/s3/<bucket>/<key>``.

``s3://bucket/key`` maps to ``<store>/s3/bucket/key``. "Uploading" and "downloading" hard-link files
where the file system allows (a model is hundreds of MB) and copy otherwise; nothing writes into a
file in place, so the links are safe.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from pipelines.definition.placeholders import placeholder_names, source_commit

LOCAL_ACCOUNT = "000000000000"
# The checkout: the code the images copy and the working folder of every local job.
REPO_ROOT = Path(__file__).resolve().parents[2]


CODE_FOLDERS = ("containers", "training", "inference")


def code_fingerprint(repo: Path) -> str:
    """What the images would contain: a hash of the code they copy. The local "image URI" carries it,
    so editing the code changes every step's cache key, as rebuilding the images changes their URIs
    in the cloud (CDK tags image assets by content)."""
    import hashlib

    digest = hashlib.sha256()
    for folder in CODE_FOLDERS:
        for path in sorted((repo / folder).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(repo)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def local_placeholder_values(subnet_count: int, repo: Path | None = None) -> dict[str, str]:
    """Values for every ``${Name}`` of the definition on this machine (CDK fills them in the cloud)."""
    repo = repo or REPO_ROOT
    code = code_fingerprint(repo)
    values = {
        "AWS::Partition": "aws",
        "AWS::AccountId": LOCAL_ACCOUNT,
        "TrainingImageUri": f"llm-neuron-mlops-train:local-{code}",
        "InferenceImageUri": f"llm-neuron-mlops-serve:local-{code}",
        "DataBucket": "local-data",
        "ArtifactsBucket": "local-artifacts",
        "KmsKeyArn": f"arn:aws:kms:local:{LOCAL_ACCOUNT}:key/local",
        "JobRoleName": "local",
        "JobSecurityGroupId": "sg-local",
        "SourceCommit": source_commit(repo),
    }
    for name in placeholder_names(subnet_count):
        values.setdefault(
            name, f"subnet-local-{name[-1]}" if name.startswith("PrivateSubnet") else f"local-{name}"
        )
    return values


def link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists() or dst.is_symlink():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def copy_tree(src: Path, dst: Path) -> int:
    """Every file under ``src`` (a file or a folder) into ``dst``; returns how many."""
    if src.is_file():
        link_or_copy(src, dst / src.name)
        return 1
    count = 0
    for path in sorted(src.rglob("*")):
        real = path.resolve() if path.is_symlink() else path
        if real.is_file():
            link_or_copy(real, dst / path.relative_to(src))
            count += 1
    return count


def private_store(root: Path) -> Path:
    """The local store, readable by this user only (0700): it holds the training data, the models and
    mlflow.db, which a 0755 folder (the usual umask 022) shows to every user of the machine. A store an
    earlier version created open is closed here."""
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    if root.stat().st_mode & 0o077:
        root.chmod(0o700)
    return root


class LocalStore:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    @property
    def s3_root(self) -> Path:
        return self.root / "s3"

    def path(self, uri: str) -> Path:
        """The local file or folder for ``uri``; never outside ``<store>/s3/<bucket>/``."""
        if not isinstance(uri, str) or not uri.startswith("s3://"):
            raise ValueError(f"{uri!r} is not an s3:// URI")
        bucket, _, key = uri[len("s3://") :].partition("/")
        parts = [part for part in key.split("/") if part]
        if bucket in ("", ".", "..") or "/" in bucket or any(part in (".", "..") for part in parts):
            raise ValueError(
                f"{uri!r} is not a usable s3:// URI (bucket and key must not be empty, '.' or '..')"
            )
        path = self.s3_root.joinpath(bucket, *parts)
        if not path.resolve().is_relative_to(self.s3_root.resolve() / bucket):
            raise ValueError(f"{uri!r} leads outside the local store")
        return path

    def download(self, uri: str, dst: Path) -> int:
        """An S3Prefix input: the object named by ``uri`` or every object under that prefix."""
        src = self.path(uri)
        if src.is_file():
            return copy_tree(src, dst)
        if src.is_dir():
            return copy_tree(src, dst)
        return 0

    def upload(self, src: Path, uri: str) -> int:
        dst = self.path(uri)
        if src.is_file():
            link_or_copy(src, dst)
            return 1
        return copy_tree(src, dst) if src.exists() else 0

    def exists(self, uri: str) -> bool:
        path = self.path(uri)
        return path.is_file() or (path.is_dir() and any(path.iterdir()))
