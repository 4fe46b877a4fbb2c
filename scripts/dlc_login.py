"""``make dlc-login``: log Docker in to the AWS Deep Learning Containers registry of ``project.region``,
which ``cdk deploy`` pulls both images' base images from (why CDK does not do it itself:
``infra/images.py``).

    .venv/bin/python scripts/dlc_login.py                   # aws ecr get-login-password ... | docker login ...
    .venv/bin/python scripts/dlc_login.py --dry-run         # print that command, run nothing
    .venv/bin/python scripts/dlc_login.py --print-registry  # print the registry host (for a manual docker build)

The config is read the way ``app.py`` (and so ``cdk deploy``) reads it: ``config/default.yaml`` plus the
files in ``MLOPS_CONFIG`` (colon-separated), so the login is for the region the stacks deploy to. The token
lasts 12 hours ("The authorization token is valid for 12 hours", AWS CLI reference, ``aws ecr
get-login-password``); run it again before a later deploy.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from config import ConfigError, load_config
from infra.dlc_registry import dlc_registry, login_commands

# What each tool is for, said when it is missing.
NEEDS = {
    "aws": "the AWS CLI (v2, or v1 >= 1.17.10) fetches the ECR token: "
    "https://docs.aws.amazon.com/cli/latest/userguide/getting-started-install.html",
    "docker": "Docker stores the login, and `cdk deploy` builds both images with it: "
    "https://docs.docker.com/engine/install/",
}


def shell_line(token: list[str], login: list[str]) -> str:
    return f"{shlex.join(token)} | {shlex.join(login)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="make dlc-login", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dry-run", action="store_true", help="print the login command, run nothing")
    parser.add_argument("--print-registry", action="store_true", help="print the registry host only")
    args = parser.parse_args(argv)

    files = [Path(p) for p in os.environ.get("MLOPS_CONFIG", "").split(":") if p]
    try:
        region = load_config(files).project.region
        registry = dlc_registry(region)
        token, login = login_commands(region)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.print_registry:
        print(registry)
        return 0
    line = shell_line(token, login)
    if args.dry_run:
        print(line)
        return 0

    missing = [tool for tool in (token[0], login[0]) if shutil.which(tool) is None]
    if missing:
        for tool in missing:
            print(f"error: `{tool}` is not on PATH; {NEEDS[tool]}", file=sys.stderr)
        print(f"Install it, then run `make dlc-login` again (or by hand: {line}).", file=sys.stderr)
        return 2

    print(f"Logging Docker in to {registry} (project.region={region}) ...", file=sys.stderr)
    fetched = subprocess.run(token, capture_output=True, text=True)
    if fetched.returncode != 0:
        print(
            f"error: `{shlex.join(token)}` failed ({fetched.stderr.strip() or 'no message'}). Check the "
            "credentials it used with `aws sts get-caller-identity`; they need ecr:GetAuthorizationToken.",
            file=sys.stderr,
        )
        return 1
    logged_in = subprocess.run(login, input=fetched.stdout, capture_output=True, text=True)
    if logged_in.returncode != 0:
        print(
            f"error: `{shlex.join(login)}` failed ({logged_in.stderr.strip() or 'no message'}). Is the "
            "Docker engine running (`docker info`)?",
            file=sys.stderr,
        )
        return 1
    print(f"Logged in to {registry}; the token lasts 12 hours. Now `cdk deploy --all`.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
