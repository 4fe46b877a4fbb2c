"""Where the AWS Deep Learning Containers (DLC) that our Dockerfiles start FROM live, per region.

Both images build FROM a DLC in a private ECR registry owned by AWS. The registry's account differs by
region: 763104351884 serves most commercial regions, the opt-in regions have their own accounts, and China
has another one on another domain. The image assets pass the registry of ``project.region`` to the
Dockerfiles as the build argument ``DLC_REGISTRY`` (``infra/images.py``), and ``make dlc-login``
(``scripts/dlc_login.py``) logs Docker in to that same registry before ``cdk deploy`` builds the images.

No CDK import here: ``make dlc-login`` uses this module without starting jsii.
"""

from __future__ import annotations

from config import ConfigError

# The Dockerfiles' `ARG` that holds the registry host (`FROM ${DLC_REGISTRY}/<repository>:<tag>`).
DLC_REGISTRY_ARG = "DLC_REGISTRY"

# Source: aws/deep-learning-containers docs/reference/region_availability.md ("Private ECR account IDs by
# region", table "Deep Learning Containers"), commit e0ecedea6a1c (2026-08-21), published at
# https://aws.github.io/deep-learning-containers/reference/region_availability/. Copied row by row; a
# region that is not listed there is refused rather than guessed. GovCloud is not in that table.
DLC_ACCOUNTS = {
    "us-east-2": "763104351884",
    "us-east-1": "763104351884",
    "us-west-1": "763104351884",
    "us-west-2": "763104351884",
    "af-south-1": "626614931356",
    "ap-east-1": "871362719292",
    "ap-south-2": "772153158452",
    "ap-southeast-3": "907027046896",
    "ap-southeast-5": "550225433462",
    "ap-southeast-4": "457447274322",
    "ap-south-1": "763104351884",
    "ap-southeast-6": "633930458069",
    "ap-northeast-3": "364406365360",
    "ap-northeast-2": "763104351884",
    "ap-southeast-1": "763104351884",
    "ap-southeast-2": "763104351884",
    "ap-east-2": "975050140332",
    "ap-southeast-7": "590183813437",
    "ap-northeast-1": "763104351884",
    "ca-west-1": "204538143572",
    "ca-central-1": "763104351884",
    "eu-central-1": "763104351884",
    "eu-west-1": "763104351884",
    "eu-west-2": "763104351884",
    "eu-south-1": "692866216735",
    "eu-west-3": "763104351884",
    "eu-south-2": "503227376785",
    "eu-north-1": "763104351884",
    "eu-central-2": "380420809688",
    "il-central-1": "780543022126",
    "mx-central-1": "637423239942",
    "me-south-1": "217643126080",
    "me-central-1": "914824155844",
    "sa-east-1": "763104351884",
    "cn-north-1": "727897471807",
    "cn-northwest-1": "727897471807",
}

# ECR's registry host is `<account>.dkr.ecr.<region>.amazonaws.com` (aws/deep-learning-containers
# docs/get_started/index.md: "pull using the private URI format:
# `<account_id>.dkr.ecr.<region>.amazonaws.com/<repository>:<tag>`"); in the China regions the domain is
# amazonaws.com.cn (Amazon ECR User Guide, China edition, "Amazon ECR private registry": "The URL for your
# default private registry is `https://{aws_account_id}.dkr.ecr.{cn-north-1}.amazonaws.com.cn`").
CHINA_REGION_PREFIX = "cn-"


def dlc_registry(region: str) -> str:
    """The DLC registry host for ``region``, e.g. ``763104351884.dkr.ecr.us-east-1.amazonaws.com``.

    Raises ConfigError naming ``project.region`` when the DLC table lists no registry for it.
    """
    account = DLC_ACCOUNTS.get(region)
    if account is None:
        raise ConfigError(
            [
                f"project.region: {region!r} has no AWS Deep Learning Containers registry in the table this "
                "project copies (infra/dlc_registry.py, from aws/deep-learning-containers "
                "docs/reference/region_availability.md), so the training and inference images cannot be "
                "built FROM their base images there. Deploy to a listed region "
                f"({', '.join(sorted(DLC_ACCOUNTS))}), or add the region's row once AWS lists it."
            ]
        )
    domain = "amazonaws.com.cn" if region.startswith(CHINA_REGION_PREFIX) else "amazonaws.com"
    return f"{account}.dkr.ecr.{region}.{domain}"


def login_commands(region: str) -> tuple[list[str], list[str]]:
    """The two commands of ``aws ecr get-login-password --region R | docker login ... <registry>``, as argv
    lists: the first prints an ECR token, the second reads it on stdin."""
    registry = dlc_registry(region)
    token = ["aws", "ecr", "get-login-password", "--region", region]
    login = ["docker", "login", "--username", "AWS", "--password-stdin", registry]
    return token, login
