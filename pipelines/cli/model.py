"""``mlops model import SOURCE``: bring a base model (a Hugging Face Hub id or a local folder) into the
data bucket, or with ``--local`` into the local store, and say which ``pipeline.base_model_s3_uri`` to
set. The work is in ``pipelines.operate.model_import``; this module parses and shows."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from pipelines.cli.options import ConfigFiles, SetItems, load, out, say
from pipelines.operate.model_import import CONFIG_KEY, Imported, import_model, write_override

app = typer.Typer(help="Base models: bring one from the Hugging Face Hub or a folder.", no_args_is_help=True)

GIB = 1 << 30


class BarProgress:
    """A transfer bar over all the files (rich, on a terminal)."""

    def __init__(self) -> None:
        self.bar = Progress(
            TextColumn("uploading"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), console=out
        )
        self.task: Any = None

    def begin(self, files: int, total_bytes: int) -> None:
        self.bar.start()
        self.task = self.bar.add_task("upload", total=total_bytes)

    def advance(self, transferred: int) -> None:
        self.bar.advance(self.task, transferred)  # rich's Progress takes its own lock

    def file_done(self, name: str, size: int) -> None:
        pass

    def stop(self) -> None:
        self.bar.stop()


class LineProgress:
    """Plain lines (CI logs, pipes): one per file sent, and one per tenth of the bytes, so that a
    multi-GiB shard shows it moves. No bar to redraw."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.files = self.done = 0
        self.sent = self.total = self.tenths = 0

    def begin(self, files: int, total_bytes: int) -> None:
        self.files, self.total = files, total_bytes
        say(f"uploading {files} files, {total_bytes / GIB:.2f} GiB")

    def advance(self, transferred: int) -> None:
        with self.lock:  # boto3 calls back from its transfer threads
            self.sent += transferred
            tenths = self.sent * 10 // max(self.total, 1)
            if tenths > self.tenths and tenths < 10:
                self.tenths = tenths
                say(f"{tenths * 10}% ({self.sent / GIB:.2f} of {self.total / GIB:.2f} GiB)")

    def file_done(self, name: str, size: int) -> None:
        self.done += 1
        say(
            f"uploaded {name} ({self.done}/{self.files}, {self.sent / GIB:.2f} of {self.total / GIB:.2f} GiB)"
        )

    def stop(self) -> None:
        pass


@app.command("import")
def import_(
    source: Annotated[
        str, typer.Argument(help="A Hugging Face Hub id (owner/name) or a local model folder.")
    ],
    name: Annotated[
        str | None,
        typer.Option("--name", help="Name under base-models/ (default: the repo's or folder's name)."),
    ] = None,
    revision: Annotated[
        str | None, typer.Option("--revision", help="Hub branch, tag or commit (default: main).")
    ] = None,
    write_override_file: Annotated[
        Path | None,
        typer.Option(
            "--write-override",
            help=f"Set {CONFIG_KEY} and model.architecture in this YAML override file (kept otherwise).",
        ),
    ] = None,
    local: Annotated[
        bool,
        typer.Option("--local", help="Store it in the local store's data bucket, for `mlops run --local`."),
    ] = False,
    config: ConfigFiles = [],
    set_: SetItems = [],
) -> None:
    """Download (safetensors only), check the architecture (Llama, Qwen3), hash and store a base model
    under base-models/NAME/SHA256/ of the data bucket (--local: of the local store).

    A gated Hub model needs HF_TOKEN, from an account that accepted the model's license.

    Examples: mlops model import meta-llama/Llama-3.2-1B-Instruct;  mlops model import ./my-model --local
    """
    cfg = load(config, set_)
    progress = BarProgress() if out.is_terminal else LineProgress()
    try:
        imported = import_model(cfg, source, name=name, revision=revision, local=local, progress=progress)
    finally:
        progress.stop()
    _report(imported, local)
    if write_override_file is not None:
        write_override(write_override_file, imported.config_value, imported.shape)
        say(
            f"{CONFIG_KEY} and model.architecture set in {write_override_file}: use it with "
            f"--config {write_override_file} (mlops plan sizes this model then)"
        )
    else:
        say(f"set {CONFIG_KEY} to {imported.config_value}")
        say(f"  e.g. --set '{CONFIG_KEY}={imported.config_value}', or rerun with --write-override FILE")
        # Without them the planner sizes the default model.architecture (SmolLM2-135M), not this one.
        say("and model.architecture to the values above, for mlops plan (--write-override sets both)")


def _report(imported: Imported, local: bool) -> None:
    verb = "stored" if imported.copied else "already stored (same content)"
    say(
        f"{imported.architecture} {imported.name}: {imported.files} files, {imported.bytes / GIB:.2f} GiB, "
        f"sha256 {imported.sha256}"
    )
    say(f"{verb} at {imported.stored_at}")
    say("model.architecture: " + ", ".join(f"{key}={_yaml(value)}" for key, value in imported.shape.items()))
    if local:
        # A local run seeds BaseModelS3Uri from model.local_source (pipelines/local/run.py seed_store);
        # a --param given on the command line wins over it.
        say(f"for a local run: mlops run --local --param BaseModelS3Uri={imported.stored_at}")


def _yaml(value: Any) -> str:
    """As --set and YAML write it (true, not True)."""
    return str(value).lower() if isinstance(value, bool) else str(value)
