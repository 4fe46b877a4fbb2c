"""The local stand-in for S3 and for the deploy-time values: ``.mlops/s3/<bucket>/<key>``.

``s3://bucket/key`` maps to ``<store>/s3/bucket/key``. "Uploading" and "downloading" copy: an S3
object never changes under its key, and the store's content-addressed prefixes promise the same. Hard
links broke that promise (editing ``data/train.jsonl`` in place changed the stored copy, and truncating
one cached archive corrupted every link to it). Where the file system can share blocks copy-on-write
(a reflink through Linux's FICLONE: btrfs, XFS), the copy costs no space or time; elsewhere (ext4,
tmpfs, macOS) it is a plain copy.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
from pathlib import Path

from pipelines.definition.placeholders import placeholder_names, source_commit
from training.errors import UserError

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


# linux/fs.h FICLONE = _IOW(0x94, 9, int): "share the source's blocks with the destination" (ioctl_ficlone(2)).
FICLONE = 0x40049409


def copy_file(src: Path, dst: Path) -> None:
    """``src`` to ``dst`` as an independent file: a reflink where the file system has them, else a copy.
    Written beside ``dst`` and renamed into place, so ``dst`` is never seen half-copied."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    partial = dst.with_name(f".partial-{dst.name}")
    try:
        with open(src, "rb") as source, open(partial, "wb") as target:
            try:
                fcntl.ioctl(target.fileno(), FICLONE, source.fileno())
            except OSError:  # not supported here (ext4, tmpfs, across file systems): copy the bytes
                shutil.copyfileobj(source, target, 1 << 20)
        shutil.copystat(src, partial)
        if dst.is_dir() and not dst.is_symlink():
            shutil.rmtree(dst)
        os.replace(partial, dst)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def copy_tree(src: Path, dst: Path) -> int:
    """Every file under ``src`` (a file or a folder) into ``dst``; returns how many."""
    if src.is_file():
        copy_file(src, dst / src.name)
        return 1
    count = 0
    for path in sorted(src.rglob("*")):
        real = path.resolve() if path.is_symlink() else path
        if real.is_file():
            copy_file(real, dst / path.relative_to(src))
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


RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


def run_folder(store_root: Path, run_id: str, flag: str) -> Path:
    """``<store>/runs/<run_id>``; a run id is a folder name, never a path (``--run-id /abs`` or ``..``
    would write outside the store)."""
    if not RUN_ID.fullmatch(run_id) or run_id.strip(".") == "":
        raise UserError(
            f"{flag} {run_id!r}: not a run id. It names a folder under {store_root / 'runs'}: letters, "
            "digits, '_', '-' and '.', starting with a letter or digit (e.g. 20261125-165532-767c)"
        )
    return store_root / "runs" / run_id


def sweep_partials(store_root: Path) -> list[Path]:
    """Remove the ``.partial-*`` copies an interrupted copy or publish left under ``<store>/s3``.

    Called only while holding the store's lock (``lock.py``): no other writer can be copying, so every
    partial is a leftover. Returns what was removed."""
    removed = []
    for folder, dirs, files in os.walk(store_root / "s3"):
        for name in [*dirs, *files]:
            if name.startswith(".partial-"):
                path = Path(folder) / name
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
                removed.append(path)
        dirs[:] = [d for d in dirs if not d.startswith(".partial-")]
    return removed


class StorePathError(UserError):
    """An s3:// URI the local store cannot map (not s3://, '.' or '..' segments, outside the store)."""


class LocalStore:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    @property
    def s3_root(self) -> Path:
        return self.root / "s3"

    def path(self, uri: str) -> Path:
        """The local file or folder for ``uri``; never outside ``<store>/s3/<bucket>/``."""
        if not isinstance(uri, str) or not uri.startswith("s3://"):
            raise StorePathError(f"{uri!r} is not an s3:// URI; give s3://BUCKET/KEY")
        bucket, _, key = uri[len("s3://") :].partition("/")
        parts = [part for part in key.split("/") if part]
        if bucket in ("", ".", "..") or "/" in bucket or any(part in (".", "..") for part in parts):
            raise StorePathError(
                f"{uri!r} is not a usable s3:// URI: the bucket and the key's segments must not be "
                "empty, '.' or '..' (S3 keeps them literally; the local store would leave its folder)"
            )
        path = self.s3_root.joinpath(bucket, *parts)
        if not path.resolve().is_relative_to(self.s3_root.resolve() / bucket):
            raise StorePathError(f"{uri!r} leads outside the local store (through a link); remove the link")
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
            copy_file(src, dst)
            return 1
        return copy_tree(src, dst) if src.exists() else 0

    def publish(self, src: Path, uri: str) -> int:
        """Copy ``src`` under a content-addressed ``uri`` that must appear whole or not at all: it is
        copied beside its place and renamed in, so an interrupted copy never passes for the content."""
        dst = self.path(uri)
        staging = dst.with_name(f".partial-{dst.name}-{os.getpid()}")
        if staging.exists():
            shutil.rmtree(staging)
        try:
            count = copy_tree(src, staging)
            if dst.exists():
                shutil.rmtree(dst)
            os.replace(staging, dst)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return count

    def exists(self, uri: str) -> bool:
        path = self.path(uri)
        return path.is_file() or (path.is_dir() and any(path.iterdir()))
