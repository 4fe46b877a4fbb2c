"""The two container images, built from ``containers/`` as CDK image assets.

``cdk synth`` only stages the build context (no Docker needed); ``cdk deploy`` builds and pushes
them to the bootstrap ECR repository, tagged by content hash, so a code change is a new image URI
(and so a new pipeline cache key). The context is the repository root, because the Dockerfiles copy
``containers/``, ``training/`` and ``inference/``; everything else is excluded, so that a change
elsewhere (``config/prices.yaml``, say) changes neither the images nor any step's cache key.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ssm as ssm
from constructs import Construct

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

        def asset(name: str, dockerfile: str) -> ecr_assets.DockerImageAsset:
            return ecr_assets.DockerImageAsset(
                self,
                name,
                directory=str(repo_root),
                file=dockerfile,
                exclude=CONTEXT_EXCLUDES,
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
