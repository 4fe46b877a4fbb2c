"""`mlops pipeline definition`: wall time of three ways to the same bytes, side by side in one run (the
machine's speed varies about 2x from day to day, so only the ratios and same-run times mean anything):

1. the SDK as shipped: it validates its config on every value it reads and every session it makes;
2. built, with the SDK config validated once (pipelines/definition/sdk.py), the definition cache off;
3. answered from the definition cache (pipelines/definition/cache.py), after one build of the same
   config: what a repeated `mlops pipeline definition`, `cdk synth` or `mlops run --local` pays.

    .venv/bin/python bench/definition_time.py [--repeat 2]

Every run must print the golden definition byte for byte (tests/golden/pipeline.json).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "golden" / "pipeline.json"
RUN_CLI = (
    "from pipelines.cli.app import main; import sys; sys.argv = ['mlops', 'pipeline', 'definition']; main()"
)
# The reference: the SDK as shipped, every lookup validating the whole config against its schema.
AS_SHIPPED = "import pipelines.definition.sdk as sdk; sdk.validate_sdk_config_once = lambda: None; " + RUN_CLI


def timed(code: str, cache: str = "off") -> float:
    env = dict(os.environ, MLOPS_DEFINITION_CACHE=cache)
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True
    )
    seconds = time.perf_counter() - start
    if out.stdout != GOLDEN.read_text():
        sys.exit("the definition differs from tests/golden/pipeline.json")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=2, help="runs of each; the best is kept")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        timed(RUN_CLI, cache)  # warms the file cache (the SDK reads thousands of files) and fills ours
        shipped = min(timed(AS_SHIPPED) for _ in range(args.repeat))
        once = min(timed(RUN_CLI) for _ in range(args.repeat))
        cached = min(timed(RUN_CLI, cache) for _ in range(args.repeat))
    print(f"mlops pipeline definition, best of {args.repeat}, byte-identical to the golden file:")
    print(f"  SDK as shipped (validates its config on every lookup): {shipped:6.2f} s")
    print(f"  built, config validated once (definition/sdk.py):     {once:6.2f} s  ({shipped / once:.2f}x)")
    print(
        f"  repeated, from the definition cache (definition/cache.py): {cached:6.2f} s  ({shipped / cached:.2f}x)"
    )


if __name__ == "__main__":
    main()
