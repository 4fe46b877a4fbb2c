"""Load the project configuration and report every problem at once, each with where it came from.

Sources, later ones winning: ``config/default.yaml``, then each override file in order, then each
``--set dotted.key=value`` (the value is read as YAML: ``3``, ``5e-1``, ``true``, ``[a, b]``, ``null``).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from config.schema import ProjectConfig
from training.hyperparameters import echo

DEFAULT_CONFIG = Path(__file__).parent / "default.yaml"
# The dated SageMaker price table that `mlops cost` reads and `mlops cost refresh` writes.
PRICES_FILE = Path(__file__).parent / "prices.yaml"

Key = tuple[str, ...]


class _Loader(yaml.SafeLoader):
    """PyYAML's SafeLoader, except that floats are read as YAML 1.2 reads them.

    PyYAML implements YAML 1.1, where a float needs a dot and a signed exponent: ``5e-1`` and ``1.5e3``
    are strings there, which the strict schema refuses as "not a valid number" while ``--param
    QualityThreshold=5e-1`` is accepted. YAML 1.2's core schema reads them as floats
    (https://yaml.org/spec/1.2.2/#1032-tag-resolution; the pattern is yaml/pyyaml pull request 174, less
    its base-60 form). A subclass, so PyYAML's own SafeLoader is left as it is: add_implicit_resolver
    copies the resolver table into the class it is called on."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
        |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def yaml_load(text: str) -> Any:
    """One YAML document, read safely (plain data only), with YAML 1.2 floats."""
    return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: safe


# PyYAML's composer and constructor recurse once per nesting level: `[` * 5000 exhausts Python's stack.
_TOO_DEEP = "nests lists or mappings too deeply to read (Python's parser recurses once per level)"


class ConfigError(Exception):
    """Every configuration problem, one per line, each with file:line or --set and the dotted key."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        n = len(problems)
        super().__init__(
            f"{n} configuration problem{'s' if n != 1 else ''}:\n" + "\n".join(f"  {p}" for p in problems)
        )


def locate_keys(
    node: yaml.Node | None,
    file: Path,
    prefix: Key,
    where: dict[Key, str],
    problems: list[str],
    visited: set[int] | None = None,
) -> None:
    """Record `file:line` of every key path in `where`, and each duplicate key (YAML keeps the last) in `problems`.

    An alias is the same node as its anchor: each node is walked once, so a chain of aliases (each mapping
    repeating the one before ten times) costs its size in the file, not the size it expands to."""
    visited = set() if visited is None else visited
    if not isinstance(node, yaml.MappingNode) or id(node) in visited:
        return
    visited.add(id(node))
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
        locate_keys(value_node, file, path, where, problems, visited)


def _read_yaml(file: Path, where: dict[Key, str], problems: list[str]) -> dict[str, Any]:
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        problems.append(f"{file}: config file not found")
        return {}
    except IsADirectoryError:
        problems.append(f"{file}: is a directory; --config takes a YAML file, e.g. --config {file}/mine.yaml")
        return {}
    except UnicodeDecodeError as exc:
        problems.append(f"{file}: not UTF-8 ({exc.reason} at byte {exc.start}); re-save it as UTF-8")
        return {}
    except OSError as exc:
        problems.append(f"{file}: cannot read it ({exc.strerror}); check the path and its permissions")
        return {}
    try:
        node = yaml.compose(text, Loader=_Loader)
        data = yaml_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        loc = f"{file}:{mark.line + 1}" if mark else str(file)
        problems.append(f"{loc}: not valid YAML ({getattr(exc, 'problem', None) or exc})")
        return {}
    except ValueError as exc:
        problems.append(f"{file}: {_unreadable_value(exc)}")
        return {}
    except RecursionError:
        problems.append(f"{file}: the file {_TOO_DEEP}; no setting takes more than a few levels")
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


def _unreadable_value(exc: ValueError) -> str:
    """A value PyYAML's constructor raised on: in practice an integer past Python's int-string limit
    (sys.get_int_max_str_digits(), 4300 digits), which no setting of ours comes near."""
    if "integer string conversion" in str(exc):
        return (
            f"a number longer than Python reads ({sys.get_int_max_str_digits()} digits); no setting takes "
            "one near that long: give the value you meant"
        )
    return f"a value cannot be read ({exc}); check it against config/default.yaml"


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
        value = yaml_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw  # not YAML: keep the literal text; the schema decides if it is acceptable
    except ValueError as exc:
        problems.append(f"--set {dotted.strip()}: {_unreadable_value(exc)}")
        return
    except RecursionError:
        problems.append(f"--set {dotted.strip()}: the value {_TOO_DEEP}; give the value you meant")
        return
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


def _section_sources(loc: Key, where: dict[Key, str], base: Path) -> str:
    """Where the keys inside a section came from, the user's own first: a cross-field error in
    ``training`` caused by ``--set training.max_steps=2`` names that flag, not config/default.yaml."""
    inside = [where[k] for k in sorted(where) if k[: len(loc)] == loc and len(k) > len(loc)]
    users = [w for w in dict.fromkeys(inside) if not w.startswith(f"{base}:")]
    return ", ".join(users) if users else _where(loc, where)


def _describe(exc: ValidationError, where: dict[Key, str], base: Path) -> list[str]:
    problems = []
    for err in exc.errors():
        loc = tuple(str(p) for p in err["loc"])
        dotted = ".".join(loc) or "(top level)"
        source = _where(loc, where)
        given = err.get("input")
        if err["type"] == "extra_forbidden":
            parent = _model_at(loc[:-1])
            allowed = ", ".join(parent.model_fields) if parent else "see config/default.yaml"
            problems.append(f"{source}: {dotted}: unknown key; allowed here: {allowed}")
        elif isinstance(given, dict) and err["type"] == "value_error":
            # A cross-field check of a whole section: its message names the values involved, and the
            # section itself (the whole config at the top level) is no help to echo.
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{_section_sources(loc, where, base)}: {dotted}: {msg}")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{source}: {dotted}: {msg} (got {echo(given)})")
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
        problems += _describe(exc, where, Path(base))
        raise ConfigError(problems) from None
    if problems:
        raise ConfigError(problems)
    return config
