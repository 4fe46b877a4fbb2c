"""``mlops endpoint status|invoke`` (with ``--local`` twins), ``rollback`` (cloud) and ``stop --local``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli.options import ConfigFiles, Local, SetItems, load, platform, say
from training.errors import UserError

app = typer.Typer(
    help="The model endpoint (`--local`: the one `mlops run --local` started).", no_args_is_help=True
)


@app.command("status")
def status(local: Local = False, config: ConfigFiles = [], set_: SetItems = []) -> None:
    """The endpoint's status, the model version it serves and its instances."""
    say(platform(load(config, set_), local).endpoint_status().line())


@app.command("invoke")
def invoke(
    prompt: Annotated[str, typer.Option("--prompt", help="The user message.")],
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1, help="Completion budget.")] = 64,
    local: Local = False,
    config: ConfigFiles = [],
    set_: SetItems = [],
) -> None:
    """Send one OpenAI-style chat request and print the reply.

    Example: mlops endpoint invoke --prompt "Convert this date to ISO 8601: the 30th of June, 1956"
    """
    say(platform(load(config, set_), local).invoke(prompt, max_tokens))


@app.command("rollback")
def rollback(config: ConfigFiles = [], set_: SetItems = []) -> None:
    """Redeploy the newest approved version older than the one being served (same blue/green policy)."""
    from pipelines.operate.cloud import CloudPlatform

    cfg = load(config, set_)
    done = CloudPlatform(cfg).rollback()
    say(
        f"{done.endpoint}: rolling back v{done.from_version} -> v{done.to_version} ({done.endpoint_config}); "
        f"v{done.from_version} is now Rejected (approve it again to redeploy it); "
        "watch with `mlops endpoint status`"
    )


@app.command("stop")
def stop(
    local: Annotated[bool, typer.Option("--local", help="The endpoint `mlops run --local` started.")] = False,
    config: ConfigFiles = [],
    set_: SetItems = [],
) -> None:
    """Stop the local endpoint (SIGTERM: in-flight requests finish first)."""
    if not local:
        raise UserError(
            "only `mlops endpoint stop --local` exists; a cloud endpoint is managed by the deployer "
            "(`mlops endpoint rollback`, or delete its stack)"
        )
    from pipelines.local.endpoint import stop as stop_local
    from pipelines.local.lock import store_lock

    store = Path(load(config, set_).local.store_dir).resolve()
    with store_lock(store, "mlops endpoint stop --local"):
        state = stop_local(store)
    if state is None:
        typer.echo("no local endpoint is running")
    elif state["was_running"]:
        typer.echo(f"stopped the local endpoint at {state['url']} (pid {state['pid']})")
    else:
        typer.echo(
            f"the local endpoint at {state['url']} had already exited (pid {state['pid']} is gone or now "
            "belongs to another process, which was left alone); removed its record"
        )
