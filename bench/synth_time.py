"""`python app.py` (what `cdk synth` runs): wall time, side by side in one run (the machine's speed varies
about 2x from day to day, so only same-run times and ratios mean anything).

    .venv/bin/python bench/synth_time.py [--repeat 2]

1. definition cache off: the pipeline definition is built by the SageMaker SDK (a first synth);
2. definition cache warm: the same config and code again (every later synth until either changes);
3. (2) with `infra.validate_templates: true`: CDK's CloudFormation template validation, off by default;
4. for the breakdown only, not a way to run: (2) without the cdk-nag packs, and the Python side alone
   (imports and constructs, no `synth()`), so the report can say where the rest goes.

Each run synthesizes into its own temporary cdk.out. Not a timed test.
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
SYNTH = "import app; app.main().synth()"
NO_NAG = "import app; app.add_security_checks = lambda a: None; app.main().synth()"
CONSTRUCT_ONLY = "import app; app.main()"


def timed(code: str, cache: str, outdir: str, config: str = "") -> float:
    env = dict(os.environ, MLOPS_DEFINITION_CACHE=cache, CDK_OUTDIR=outdir, MLOPS_CONFIG=config)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=2, help="runs of each; the best is kept")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cache = str(Path(tmp) / "definitions")

        validating = Path(tmp) / "validate.yaml"
        validating.write_text("infra:\n  validate_templates: true\n")

        def best(code: str, cache: str, config: str = "") -> float:
            return min(timed(code, cache, tempfile.mkdtemp(dir=tmp), config) for _ in range(args.repeat))

        timed(SYNTH, cache, tempfile.mkdtemp(dir=tmp))  # warms the file cache and fills the definition cache
        timed(SYNTH, cache, tempfile.mkdtemp(dir=tmp), str(validating))  # and its entry for this config
        cold = best(SYNTH, "off")
        warm = best(SYNTH, cache)
        validated = best(SYNTH, cache, str(validating))
        no_nag = best(NO_NAG, cache)
        constructs = best(CONSTRUCT_ONLY, cache)
    print(f"python app.py (cdk synth), best of {args.repeat}:")
    print(f"  definition built by the SDK (cache off):  {cold:6.2f} s")
    print(f"  definition from the cache (warm):         {warm:6.2f} s  ({cold / warm:.2f}x)")
    print(f"  warm, with infra.validate_templates=true: {validated:6.2f} s  ({validated - warm:+.2f} s)")
    print("breakdown of the warm run:")
    print(f"  imports + constructs (no synth):          {constructs:6.2f} s")
    print(f"  + synth() without the cdk-nag packs:      {no_nag:6.2f} s")
    print(f"  + the cdk-nag packs (AwsSolutions, HIPAA, NIST): {warm - no_nag:+6.2f} s")


if __name__ == "__main__":
    main()
