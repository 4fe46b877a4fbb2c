"""``mlops``: the root command, and the one place where errors become messages.

Every command raises; none prints its own error. :class:`ErrorBoundary` turns what a user can cause
into one line and an exit status:

* ``NothingThere`` (an empty account or store): the fact on stdout, exit 1;
* ``UserError`` and ``ConfigError`` (bad input, bad config, bad parameters): ``error: ...``, exit 2;
* ``AwsError`` (a botocore error the cloud code explained): what to do, in one line, exit 1.

``mlops --debug ...`` adds the traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import traceback
from typing import Annotated, Any

import typer
from rich.markup import escape
from typer.core import TyperGroup

from config import ConfigError
from pipelines.cli import config, cost, endpoint, model, models, pipeline, plan, run, ui
from pipelines.cli.options import err, say, warn
from pipelines.operate.aws_errors import AwsError, NothingThere
from training.errors import UserError


class ErrorBoundary(TyperGroup):
    """The root group: runs the command, and explains what it raised."""

    # ctx is a typer.Context; typed Any because its base class (typer's vendored click) is private.
    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except NothingThere as exc:
            say(str(exc))
            self._exit(ctx, exc, 1)
        except ConfigError as exc:
            err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, markup=True)
            self._exit(ctx, exc, 2)
        except UserError as exc:
            warn(f"error: {exc}")
            self._exit(ctx, exc, 2)
        except AwsError as exc:
            warn(f"error: {exc}")
            if not ctx.params.get("debug"):
                warn("(run with `mlops --debug ...` for the raw error)")
            self._exit(ctx, exc, 1)
        # Anything else is not something a user caused: a bug, with its traceback.

    @staticmethod
    def _exit(ctx: Any, exc: BaseException, code: int) -> None:
        if ctx.params.get("debug"):
            warn("".join(traceback.format_exception(exc)))
        raise typer.Exit(code) from None


app = typer.Typer(
    cls=ErrorBoundary,
    no_args_is_help=True,
    help="Fine-tune on Trainium, serve on Inferentia; the same steps run locally.",
)


@app.callback()
def root(
    debug: Annotated[bool, typer.Option("--debug", help="Show the raw error and its traceback.")] = False,
) -> None:
    """Keep subcommands explicit; --debug applies to all of them (the error boundary reads it)."""


app.add_typer(config.app, name="config")
app.add_typer(pipeline.app, name="pipeline")
app.add_typer(models.app, name="models")
app.add_typer(model.app, name="model")
app.add_typer(endpoint.app, name="endpoint")
app.add_typer(cost.app, name="cost")
app.command("train")(run.train)
app.command("run")(run.run)
app.command("ui")(ui.ui)
app.command("plan")(plan.plan)


def main() -> None:
    """The console script ``mlops``."""
    app()
