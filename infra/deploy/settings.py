"""What the deploy component is given (read from the config once, in app.py) and the names it derives."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import aws_logs as logs

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

    @property
    def error_alarm_name(self) -> str:
        return f"{self.endpoint_name}-5xx"

    @property
    def latency_alarm_name(self) -> str:
        return f"{self.endpoint_name}-latency"
