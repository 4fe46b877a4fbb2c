"""``mlops plan``: whether training and serving fit the hardware, and why, before anything is compiled.

Offline: reads the config (``--config``/``--set``), never AWS. A table on a terminal; ``--json`` for
scripts. Exit 0 when both fit, 1 when either does not (the plan is the answer, not an error).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from config.plan import Check, Plan, SidePlan, TrainingPlan, plan_config
from pipelines.cli.options import ConfigFiles, SetItems, load, out, say

AsJson = Annotated[bool, typer.Option("--json", help="Print the plan as JSON instead of a table.")]


def _check_json(check: Check) -> dict[str, Any]:
    verdict = {True: "pass", False: "fail", None: "not checked"}[check.ok]
    return {"name": check.name, "ok": check.ok, "verdict": verdict, "reason": check.reason}


def _side_json(side: SidePlan) -> dict[str, Any]:
    data: dict[str, Any] = {
        "fits": side.fits,
        "instance_type": side.instance_type,
        "neuron_cores": side.cores,
        "gib_per_core": round(side.gib_per_core, 3),
        "limit_gib_per_core": round(side.limit_gib_per_core, 3),
        "breakdown_gib": {k: round(v, 3) for k, v in side.breakdown.items()},
        "checks": [_check_json(c) for c in side.checks],
        "fix": side.fix,
    }
    if isinstance(side, TrainingPlan) and side.flops is not None:
        data["data_parallel"] = side.data_parallel
        data["activations_gib"] = {k: round(v, 3) for k, v in side.activations_gib.items()}
        data["flops_per_token"] = {
            "forward": side.flops.forward,
            "full_training": side.flops.full_training,
            "lora_training": side.flops.lora_training,
            "hardware_per_token": side.flops.hardware_per_token,
            "model_flops_for_mfu": side.flops.model_flops,
        }
        data["tokens_per_second_ceiling"] = round(side.tokens_per_second_ceiling or 0.0, 1)
    return data


def plan_json(plan: Plan) -> dict[str, Any]:
    return {"fits": plan.fits, "training": _side_json(plan.training), "serving": _side_json(plan.serving)}


def _side_table(title: str, side: SidePlan) -> Table:
    verdict = "fits" if side.fits else "DOES NOT FIT"
    table = Table("check", "verdict", "reason", title=f"{title}: {verdict}")
    for name, gib in side.breakdown.items():
        table.add_row(Text(name), f"{gib:.3f} GiB", "")
    for c in side.checks:
        shown = {True: "[green]pass[/green]", False: "[red]fail[/red]", None: "[yellow]not checked[/yellow]"}[
            c.ok
        ]
        table.add_row(Text(c.name), shown, Text(c.reason))
    if isinstance(side, TrainingPlan) and side.flops is not None:
        f = side.flops
        table.add_row(
            "FLOPs per token",
            "",
            Text(f"{f.model_flops:.3e} model (LoRA), {f.hardware_per_token:.3e} executed"),
        )
        table.add_row(
            "tokens/s ceiling",
            "",
            Text(
                f"{side.tokens_per_second_ceiling:,.0f} at peak bf16 over {side.data_parallel} data-parallel ranks"
            ),
        )
    if side.fix:
        table.add_row("fix", "", Text(side.fix))
    return table


def plan(as_json: AsJson = False, config: ConfigFiles = [], set_: SetItems = []) -> None:
    """Whether training and serving fit their instances: memory per NeuronCore, shape rules, FLOPs.

    Examples: mlops plan;  mlops plan --json --set training.tensor_parallel_size=8
    """
    cfg = load(config, set_)
    result = plan_config(cfg)
    if as_json:
        say(json.dumps(plan_json(result), indent=2))
    else:
        out.print(_side_table("training", result.training))
        out.print(_side_table("serving", result.serving))
    if not result.fits:
        raise typer.Exit(1)
