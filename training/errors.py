"""Errors a user can cause (bad data, bad hyperparameters, missing inputs).

The entrypoint reports a ``UserError`` as one paragraph with no traceback; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix: the message says what is wrong, where, and what to do."""


def format_problems(headline: str, problems: list[str], cap: int = 20) -> str:
    """One message listing up to ``cap`` problems, then how many more there were."""
    shown = problems[:cap]
    lines = [headline, *(f"  {p}" for p in shown)]
    if len(problems) > cap:
        lines.append(f"  ... and {len(problems) - cap} more ({len(problems)} in all)")
    return "\n".join(lines)
