"""What a person sees while ``mlops run --local`` works: a live table of the steps on a terminal,
one line per state change otherwise (CI logs, pipes)."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from pipelines.local.executor import StepState

STYLE = {
    "pending": "dim",
    "running": "bold yellow",
    "done": "green",
    "cached": "cyan",
    "failed": "bold red",
    "skipped": "dim",
}


def _duration(state: StepState) -> str:
    if state.status == "running" and state.started:
        return f"{time.time() - state.started:.0f}s"
    return f"{state.seconds:.1f}s" if state.seconds is not None else ""


class StepView:
    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()
        self.live: Live | None = None
        self.states: list[StepState] = []
        self.last_line: dict[str, str] = {}
        self.printed: dict[str, str] = {}

    def __enter__(self) -> StepView:
        if self.console.is_terminal:
            self.live = Live(self._table(), console=self.console, refresh_per_second=2, transient=False)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.live.update(self._table())
            self.live.__exit__(*exc)

    def _table(self) -> Table:
        table = Table("step", "status", "time", "detail", expand=False)
        for state in self.states:
            detail = state.message or (
                self.last_line.get(state.name, "") if state.status == "running" else ""
            )
            # Names and log lines are plain text: "[rank0]" or "[/opt/ml/...]" must not be read as markup.
            table.add_row(
                Text(state.display_name),
                Text(state.status, style=STYLE.get(state.status, "")),
                _duration(state),
                Text(detail[-100:]),
            )
        return table

    def on_change(self, states: list[StepState]) -> None:
        self.states = states
        if self.live is not None:
            self.live.update(self._table())
            return
        for state in states:
            seen = f"{state.status}|{state.message}"
            if self.printed.get(state.name) != seen and state.status != "pending":
                self.printed[state.name] = seen
                extra = f" ({_duration(state)})" if state.status in ("done", "cached", "failed") else ""
                message = f": {state.message}" if state.message else ""
                self.console.print(
                    f"[{state.status}] {state.name}{extra}{message}", markup=False, highlight=False
                )

    def on_note(self, note: str) -> None:
        """A message for the person, not a step's log line (a resumed step, a cache miss and why):
        printed above the live table, or as its own line."""
        self.console.print(f"note: {note}", markup=False, highlight=False)

    def on_line(self, step: str, line: str) -> None:
        if line.strip():
            self.last_line[step] = line.strip()
            if self.live is not None:
                self.live.update(self._table())
