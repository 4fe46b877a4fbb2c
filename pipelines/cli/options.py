"""What the command groups share: the common options, the consoles, and loading the config.

Options are ``Annotated`` aliases, so a command declares ``config: ConfigFiles = []`` and every
command spells ``--config``/``--set``/``--local`` the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from config import ProjectConfig, load_config
from pipelines.operate.platform import Platform
from training.errors import UserError

# Messages hold paths, ARNs and commands: never wrapped, so they stay copyable.
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

ConfigFiles = Annotated[
    list[Path],
    typer.Option("--config", "-c", help="Override YAML merged over config/default.yaml (repeatable)."),
]
SetItems = Annotated[
    list[str],
    typer.Option("--set", "-s", help="dotted.key=value override, e.g. training.max_steps=20 (repeatable)."),
]
Local = Annotated[bool, typer.Option("--local", help="The local twin: what `mlops run --local` produced.")]
Params = Annotated[
    list[str], typer.Option("--param", "-p", help="Pipeline parameter Name=value (repeatable).")
]


def load(files: list[Path], sets: list[str]) -> ProjectConfig:
    """The merged, validated config; ConfigError lists every problem (the error boundary shows them)."""
    return load_config(files, sets)


def parse_params(items: list[str]) -> dict[str, str]:
    """``--param Name=value`` items as a mapping; the values are checked against the pipeline later."""
    parsed = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UserError(f"--param {item!r}: expected Name=value, e.g. --param MaxSteps=20")
        parsed[name.strip()] = value.strip()
    return parsed


def say(text: str) -> None:
    """A plain line on stdout, with no rich markup or highlighting applied to paths and ARNs."""
    out.print(text, markup=False, highlight=False)


def warn(text: str) -> None:
    """A plain line on stderr."""
    err.print(text, markup=False, highlight=False)


def platform(cfg: ProjectConfig, local: bool) -> Platform:
    """The local twin or the cloud, as the command's ``--local`` says."""
    if local:
        from pipelines.operate.local import LocalPlatform

        return LocalPlatform(cfg)
    from pipelines.operate.cloud import CloudPlatform

    return CloudPlatform(cfg)
