"""Names of the platform's resources, derived from the config once, for the stacks.

Buckets get explicit names (``<project>-<kind>-<account>-<region>``) so the other stacks and the
acknowledgements of the security checks can refer to them without cross-stack tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

from config.schema import ProjectConfig


@dataclass(frozen=True)
class PlatformNames:
    project: str
    region: str
    account: str | None  # None: the deploy account, resolved by CloudFormation

    @classmethod
    def from_config(cls, cfg: ProjectConfig) -> PlatformNames:
        return cls(cfg.project.name, cfg.project.region, cfg.project.account)

    def bucket(self, kind: str) -> str:
        """The real name (a CloudFormation expression when the account is not in the config)."""
        from aws_cdk import Aws

        return f"{self.project}-{kind}-{self.account or Aws.ACCOUNT_ID}-{self.region}"

    # ---- how cdk-nag prints these values, for acknowledgements of one finding each -------------------

    @property
    def account_text(self) -> str:
        return self.account or "<AWS::AccountId>"

    def bucket_text(self, kind: str) -> str:
        return f"{self.project}-{kind}-{self.account_text}-{self.region}"

    def objects_text(self, kind: str, prefix: str = "") -> str:
        return f"arn:<AWS::Partition>:s3:::{self.bucket_text(kind)}/{prefix}*"

    def arn_text(self, service: str, resource: str) -> str:
        return f"arn:<AWS::Partition>:{service}:{self.region}:{self.account_text}:{resource}"
