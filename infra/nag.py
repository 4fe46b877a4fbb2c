"""The security gates: cdk-nag 3 rule packs (AwsSolutions, HIPAA Security, NIST 800-53 rev 5) as
CDK validation plugins. Synth fails on any finding that is not acknowledged; every acknowledgement
sits on the one construct it concerns and says why (``acknowledge``)."""

from __future__ import annotations

from aws_cdk import Acknowledgment, App, Validations
from cdk_nag import AwsSolutionsChecks, HIPAASecurityChecks, NIST80053R5Checks
from constructs import IConstruct


def add_security_checks(app: App) -> None:
    Validations.of(app).add_plugins(AwsSolutionsChecks(app), HIPAASecurityChecks(app), NIST80053R5Checks(app))


# Every acknowledgement made in this process: (construct path, rule, reason). tests/test_infra.py checks
# that each one matches exactly one finding the packs raise without it, so none is stale or too wide.
ACKNOWLEDGED: list[tuple[str, str, str]] = []
# Off only for that test: synth then reports every finding the acknowledgements would hide.
ENABLED = True


def acknowledge(construct: IConstruct | None, rule: str, reason: str) -> None:
    """Accept one rule's finding on one construct, with the reason a reviewer needs."""
    if construct is None:  # e.g. node.default_child of a construct that has none: a bug here, not a finding
        raise ValueError(f"cannot acknowledge {rule}: the construct does not exist")
    ACKNOWLEDGED.append((construct.node.path, rule, reason))
    if ENABLED:
        Validations.of(construct).acknowledge(Acknowledgment(id=rule, reason=reason))


def acknowledge_hipaa_and_nist(construct: IConstruct | None, rule: str, reason: str) -> None:
    """The same finding as both of those packs raise it (``HIPAA.Security-<rule>``, ``NIST.800.53.R5-<rule>``)."""
    for pack in ("HIPAA.Security", "NIST.800.53.R5"):
        acknowledge(construct, f"{pack}-{rule}", reason)
