"""The two container images, built from ``containers/`` as CDK image assets.

``cdk synth`` only stages the build context (no Docker needed); ``cdk deploy`` builds and pushes
them to the bootstrap ECR repository, tagged by content hash, so a code change is a new image URI
(and so a new pipeline cache key). The context is the repository root, because the Dockerfiles copy
``containers/``, ``training/`` and ``inference/``; everything else is excluded, so that a change
elsewhere (``config/prices.yaml``, say) changes neither the images nor any step's cache key.

Both Dockerfiles start FROM an AWS Deep Learning Container in AWS's own ECR registry, whose account
depends on the region. The assets pass the registry of the stack's region (``project.region``) as the
build argument ``DLC_REGISTRY`` (``infra/dlc_registry.py``). CDK logs Docker in only to its own
bootstrap repository, never to the registries a Dockerfile pulls FROM (aws/aws-cdk#17268: "running
`cdk deploy` produces an error as below on pull, because the docker build doesn't try to authenticate
with the source ECR repository referenced by the Dockerfile's `FROM` line"; closed for staleness with
no CDK option added), so ``make dlc-login`` must run before ``cdk deploy``.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Stack, Token
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from infra.dlc_registry import DLC_REGISTRY_ARG, dlc_registry

# Only what the Dockerfiles copy goes into the build context.
CONTEXT_EXCLUDES = [
    "*",
    "!containers/**",
    "!training/**",
    "!inference/**",
    "**/__pycache__/**",
    "**/*.pyc",
]


class ContainerImages(Construct):
    """The two image assets, and their URIs as SSM parameters (``/<project>/images/training|inference``),
    where the deployer and the operator CLI read them."""

    def __init__(
        self, scope: Construct, construct_id: str, *, repo_root: Path, parameter_prefix: str
    ) -> None:
        super().__init__(scope, construct_id)
        region = Stack.of(self).region
        if Token.is_unresolved(region):
            raise ValueError(
                "ContainerImages needs a stack with a concrete region (project.region): the Dockerfiles' "
                "base-image registry depends on it"
            )
        build_args = {DLC_REGISTRY_ARG: dlc_registry(region)}

        def asset(name: str, dockerfile: str) -> ecr_assets.DockerImageAsset:
            return ecr_assets.DockerImageAsset(
                self,
                name,
                directory=str(repo_root),
                file=dockerfile,
                exclude=CONTEXT_EXCLUDES,
                build_args=build_args,
                platform=ecr_assets.Platform.LINUX_AMD64,
            )

        self.training = asset("Training", "containers/Dockerfile.train")
        self.inference = asset("Inference", "containers/Dockerfile.inference")
        for name, image in (("training", self.training), ("inference", self.inference)):
            ssm.StringParameter(
                self,
                f"{name.title()}Uri",
                parameter_name=f"{parameter_prefix}/images/{name}",
                string_value=image.image_uri,
                description=f"URI of the {name} image",
            )
