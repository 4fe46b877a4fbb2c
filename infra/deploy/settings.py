"""What the deploy component is given (read from the config once, in app.py) and the names it derives."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import aws_logs as logs

from infra.deploy.runtime import service_rules

# Under the artifacts bucket: one prefix per endpoint (``data-capture/<endpoint>``).
CAPTURE_PREFIX = "data-capture"
# The endpoint's one production variant. runtime/deployer.py keeps its own copy on purpose: the Lambda
# package is standalone (standard library and boto3) and cannot import this module.
VARIANT = "AllTraffic"


@dataclass(frozen=True)
class EndpointSettings:
    endpoint_name: str
    model_package_group: str
    pipeline_name: str
    instance_type: str
    initial_instance_count: int
    max_instance_count: int
    invocations_per_instance: int
    canary_percent: int
    canary_wait_seconds: int
    data_capture_percent: int
    latency_alarm_ms: int
    log_retention: logs.RetentionDays

    def service_rule_problems(self) -> list[str]:
        """The deploy rules botocore cannot check (``runtime/service_rules.py``), on the values known at
        synth time. The deployer checks them again at run time, against the live fleet it updates."""
        found = [service_rules.guardrails_not_excluded([{"InstanceType": self.instance_type}], [])]
        if self.max_instance_count >= 2:  # the deployer shifts ALL_AT_ONCE on a one-instance fleet
            # The canary runtime/deployer.py's deployment_config builds on a fleet of two or more.
            canary = {
                "Type": "CANARY",
                "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": self.canary_percent},
            }
            found.append(service_rules.canary_at_most_half_the_fleet(canary, self.max_instance_count))
        return [str(broken) for broken in found if broken]

    @property
    def error_alarm_name(self) -> str:
        return f"{self.endpoint_name}-5xx"

    @property
    def latency_alarm_name(self) -> str:
        return f"{self.endpoint_name}-latency"
