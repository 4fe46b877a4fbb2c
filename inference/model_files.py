"""Find the Hugging Face model folder behind a path SageMaker hands us.

A training job's output reaches later steps as ``model.tar.gz``; a processing input or an endpoint's
``/opt/ml/model`` may hold that archive or its extracted contents. Either way, callers get a folder
with ``config.json``.
"""

from __future__ import annotations

import logging
import tarfile
from pathlib import Path

from training.errors import UserError

log = logging.getLogger(__name__)

ARCHIVE = "model.tar.gz"


def model_folder(path: Path, what: str, extract_to: Path | None = None) -> Path:
    """``path`` itself if it holds config.json, else the extracted ``model.tar.gz`` inside it."""
    if (path / "config.json").is_file():
        return path
    archive = path / ARCHIVE if path.is_dir() else path
    if archive.is_file() and archive.name.endswith(".tar.gz"):
        target = extract_to or archive.parent / "extracted"
        if not (target / "config.json").is_file():
            log.info("extracting %s to %s", archive, target)
            target.mkdir(parents=True, exist_ok=True)
            with tarfile.open(archive, "r:gz") as tar:
                # "data" refuses absolute paths, links out of the folder and device files.
                tar.extractall(target, filter="data")
        if (target / "config.json").is_file():
            return target
        raise UserError(f"{what}: {archive} holds no config.json at its top level; it is not a model archive")
    if not path.exists():
        raise UserError(f"{what}: {path} does not exist; give the model folder (or its {ARCHIVE}) there")
    listing = ", ".join(sorted(p.name for p in path.iterdir())[:10]) if path.is_dir() else path.name
    raise UserError(
        f"{what}: {path} holds neither a Hugging Face model (config.json) nor {ARCHIVE} (found: {listing or 'nothing'})"
    )
