"""Load the project configuration and report every problem at once, each with where it came from.

Sources, later ones winning: ``config/default.yaml``, then each override file in order, then each
``--set dotted.key=value`` (the value is read as YAML: ``3``, ``true``, ``[a, b]``, ``null``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from config.schema import ProjectConfig

DEFAULT_CONFIG = Path(__file__).parent / "default.yaml"
# The dated SageMaker price table that `mlops cost` reads and `mlops cost refresh` writes.
PRICES_FILE = Path(__file__).parent / "prices.yaml"

Key = tuple[str, ...]


class ConfigError(Exception):
    """Every configuration problem, one per line, each with file:line or --set and the dotted key."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        n = len(problems)
        super().__init__(
            f"{n} configuration problem{'s' if n != 1 else ''}:\n" + "\n".join(f"  {p}" for p in problems)
        )


def locate_keys(
    node: yaml.Node | None, file: Path, prefix: Key, where: dict[Key, str], problems: list[str]
) -> None:
    """Record `file:line` of every key path in `where`, and each duplicate key (YAML keeps the last) in `problems`."""
    if not isinstance(node, yaml.MappingNode):
        return
    seen: set[str] = set()
    for key_node, value_node in node.value:
        key = str(key_node.value)
        loc = f"{file}:{key_node.start_mark.line + 1}"
        path = prefix + (key,)
        dotted = ".".join(path)
        if key in seen:
            problems.append(f"{loc}: {dotted}: duplicate key; keep one")
        seen.add(key)
        where[path] = loc
        locate_keys(value_node, file, path, where, problems)


def _read_yaml(file: Path, where: dict[Key, str], problems: list[str]) -> dict[str, Any]:
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        problems.append(f"{file}: config file not found")
        return {}
    except UnicodeDecodeError as exc:
        problems.append(f"{file}: not UTF-8 ({exc.reason} at byte {exc.start}); re-save it as UTF-8")
        return {}
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        loc = f"{file}:{mark.line + 1}" if mark else str(file)
        problems.append(f"{loc}: not valid YAML ({getattr(exc, 'problem', None) or exc})")
        return {}
    if data is None:
        return {}
    if not isinstance(data, dict):
        problems.append(f"{file}:1: the top level must be a mapping of sections (project, training, ...)")
        return {}
    if node is not None:
        locate_keys(node, file, (), where, problems)
    return data


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _apply_set(data: dict[str, Any], item: str, where: dict[Key, str], problems: list[str]) -> None:
    if "=" not in item:
        problems.append(f"--set {item}: expected dotted.key=value, e.g. training.max_steps=100")
        return
    dotted, raw = item.split("=", 1)
    keys = tuple(k for k in dotted.strip().split(".") if k)
    if not keys:
        problems.append(f"--set {item}: the key is empty")
        return
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw  # not YAML: keep the literal text; the schema decides if it is acceptable
    node = data
    for i, key in enumerate(keys[:-1]):
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            problems.append(f"--set {item}: {'.'.join(keys[: i + 1])} is a value, not a section")
            return
        node = child
    node[keys[-1]] = value
    where[keys] = f"--set {dotted.strip()}"


def _model_at(path: Key) -> type[BaseModel] | None:
    model: type[BaseModel] = ProjectConfig
    for key in path:
        field = model.model_fields.get(key)
        annotation = getattr(field, "annotation", None) if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model


def _where(loc: Key, where: dict[Key, str]) -> str:
    for n in range(len(loc), 0, -1):
        if loc[:n] in where:
            return where[loc[:n]]
    return "defaults"


def _describe(exc: ValidationError, where: dict[Key, str]) -> list[str]:
    problems = []
    for err in exc.errors():
        loc = tuple(str(p) for p in err["loc"])
        dotted = ".".join(loc) or "(top level)"
        source = _where(loc, where)
        if err["type"] == "extra_forbidden":
            parent = _model_at(loc[:-1])
            allowed = ", ".join(parent.model_fields) if parent else "see config/default.yaml"
            problems.append(f"{source}: {dotted}: unknown key; allowed here: {allowed}")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{source}: {dotted}: {msg} (got {err.get('input')!r})")
    return problems


def load_config(
    files: list[Path] | tuple[Path, ...] = (),
    overrides: list[str] | tuple[str, ...] = (),
    base: Path = DEFAULT_CONFIG,
) -> ProjectConfig:
    where: dict[Key, str] = {}
    problems: list[str] = []
    data: dict[str, Any] = {}
    for file in (base, *files):
        data = _merge(data, _read_yaml(Path(file), where, problems))
    for item in overrides:
        _apply_set(data, item, where, problems)
    try:
        config = ProjectConfig.model_validate(data)
    except ValidationError as exc:
        problems += _describe(exc, where)
        raise ConfigError(problems) from None
    if problems:
        raise ConfigError(problems)
    return config
