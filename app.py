"""CDK app entry (`cdk synth` / `cdk deploy`). No stacks exist yet: they arrive with the infrastructure issue."""

import sys

from config import load_config

if __name__ == "__main__":
    load_config()  # fail early on a bad config even now
    sys.exit("error: no CDK stacks are implemented yet (infrastructure issue); nothing to synthesize")
