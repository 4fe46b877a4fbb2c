"""Pipeline definition expressions, evaluated the way SageMaker Pipelines does at run time.

``{"Get": "Parameters.X"}``, ``{"Get": "Execution.PipelineExecutionId"}``, ``{"Get": "Steps.S.<property
path>"}`` (a property of step S's Describe* response, e.g. ``ProcessingOutputConfig.Outputs['name']
.S3Output.S3Uri``), ``{"Std:Join": {"On": sep, "Values": [...]}}`` and ``{"Std:JsonGet": {"PropertyFile":
{"Get": "Steps.S.PropertyFiles.F"}, "Path": "a.b[0].c"}}``, plus the condition types the definition can
hold. Anything else is an error that names it, never passed through as a literal.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

EXPRESSION_KEYS = ("Get", "Std:Join", "Std:JsonGet")
_PATH_PART = re.compile(r"([A-Za-z0-9_]+)|\[(?:'([^']*)'|(\d+))\]")


class ExpressionError(Exception):
    """A reference the executor cannot resolve (a bug in the definition or an unfinished step)."""


def parse_path(path: str) -> list[str | int]:
    """``Outputs['a'].S3Output.S3Uri`` -> ``["Outputs", "a", "S3Output", "S3Uri"]``; ``a[0]`` -> ``["a", 0]``."""
    parts: list[str | int] = []
    pos = 0
    while pos < len(path):
        if path[pos] == ".":
            pos += 1
            continue
        match = _PATH_PART.match(path, pos)
        if not match:
            raise ExpressionError(f"cannot parse property path {path!r} at {path[pos:]!r}")
        name, key, index = match.groups()
        parts.append(int(index) if index is not None else (name if name is not None else key))
        pos = match.end()
    return parts


def walk(value: Any, parts: list[str | int], what: str) -> Any:
    for part in parts:
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            raise ExpressionError(f"{what}: no {part!r} (have: {_keys(value)})") from None
    return value


def _keys(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(map(str, value)) or "nothing"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    return type(value).__name__


@dataclass
class Context:
    """What expressions can read: parameter values, execution variables, finished steps' properties,
    and a reader for property files (a step's JSON output, read when first needed)."""

    parameters: Mapping[str, Any]
    execution: Mapping[str, Any]
    properties: dict[str, dict[str, Any]] = field(default_factory=dict)
    read_property_file: Callable[[str, str], Any] | None = None


def resolve(node: Any, ctx: Context) -> Any:
    """Evaluate every expression in ``node`` (a definition fragment); literals come back unchanged."""
    if isinstance(node, dict):
        if len(node) == 1 and next(iter(node)) in EXPRESSION_KEYS:
            return _expression(node, ctx)
        return {key: resolve(value, ctx) for key, value in node.items()}
    if isinstance(node, list):
        return [resolve(value, ctx) for value in node]
    return node


def to_text(value: Any) -> str:
    """How SageMaker renders a value inside Join and string fields."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def _expression(node: dict[str, Any], ctx: Context) -> Any:
    kind, body = next(iter(node.items()))
    if kind == "Std:Join":
        return to_text(body.get("On", "")).join(to_text(resolve(v, ctx)) for v in body["Values"])
    if kind == "Std:JsonGet":
        file_ref = (
            body["PropertyFile"]["Get"] if isinstance(body["PropertyFile"], dict) else body["PropertyFile"]
        )
        match = re.fullmatch(r"Steps\.([^.]+)\.PropertyFiles\.([^.]+)", file_ref)
        if not match:
            raise ExpressionError(
                f"JsonGet property file reference {file_ref!r} is not Steps.<step>.PropertyFiles.<name>"
            )
        if ctx.read_property_file is None:
            raise ExpressionError("no property files can be read here")
        data = ctx.read_property_file(match.group(1), match.group(2))
        return walk(data, parse_path(body["Path"]), f"JsonGet {file_ref} {body['Path']}")
    ref = body
    if not isinstance(ref, str):
        raise ExpressionError(f"Get of a non-string {ref!r}")
    scope, _, rest = ref.partition(".")
    if scope == "Parameters":
        if rest not in ctx.parameters:
            raise ExpressionError(f"{ref}: no such parameter (have: {', '.join(ctx.parameters)})")
        return ctx.parameters[rest]
    if scope == "Execution":
        if rest not in ctx.execution:
            raise ExpressionError(
                f"{ref}: execution variable not available locally (have: {', '.join(ctx.execution)})"
            )
        return ctx.execution[rest]
    if scope == "Steps":
        step, _, path = rest.partition(".")
        if step not in ctx.properties:
            raise ExpressionError(f"{ref}: step {step!r} has not run (or does not exist)")
        return walk(ctx.properties[step], parse_path(path), ref)
    raise ExpressionError(f"unsupported reference {ref!r}")


_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "Equals": lambda a, b: a == b,
    "GreaterThan": lambda a, b: a > b,
    "GreaterThanOrEqualTo": lambda a, b: a >= b,
    "LessThan": lambda a, b: a < b,
    "LessThanOrEqualTo": lambda a, b: a <= b,
}


def evaluate_condition(condition: dict[str, Any], ctx: Context) -> tuple[bool, str]:
    """(outcome, a readable account such as ``0.93 >= 0.5``)."""
    kind = condition["Type"]
    if kind in _COMPARISONS:
        left, right = resolve(condition["LeftValue"], ctx), resolve(condition["RightValue"], ctx)
        if (
            isinstance(left, (int, float))
            and isinstance(right, str)
            or isinstance(right, (int, float))
            and isinstance(left, str)
        ):
            try:  # JsonGet may return a number and a parameter a string, or the reverse
                left, right = float(left), float(right)
            except ValueError:
                pass
        try:
            outcome = _COMPARISONS[kind](left, right)
        except TypeError as exc:
            raise ExpressionError(f"condition {kind}: cannot compare {left!r} with {right!r}") from exc
        return outcome, f"{left!r} {kind} {right!r}"
    if kind == "In":
        value, values = resolve(condition["QueryValue"], ctx), resolve(condition["Values"], ctx)
        return value in values, f"{value!r} In {values!r}"
    if kind == "Not":
        outcome, text = evaluate_condition(condition["Condition"], ctx)
        return not outcome, f"Not({text})"
    if kind == "Or":
        results = [evaluate_condition(c, ctx) for c in condition["Conditions"]]
        return any(r for r, _ in results), " Or ".join(t for _, t in results)
    raise ExpressionError(f"condition type {kind!r} is not supported by the local executor")


def step_references(node: Any) -> set[str]:
    """Names of the steps an argument tree reads from (its data dependencies)."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Get" and isinstance(value, str) and value.startswith("Steps."):
                found.add(value.split(".")[1])
            else:
                found |= step_references(value)
    elif isinstance(node, list):
        for value in node:
            found |= step_references(value)
    return found
