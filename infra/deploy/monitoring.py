"""What watches the endpoint and the deployer: the two rollback alarms (5XX errors, p90 model latency) a
blue/green canary rolls back on, the dead-letter alarm, and a dashboard of the endpoint and the pipeline.

The rollback alarms tell the alarm topic when they go to ALARM only: SageMaker acts on them by itself
(it rolls the update back), and their OK and INSUFFICIENT_DATA transitions (after every rollout, and at
creation) would be mail nobody has to act on. The dead-letter alarm also says OK, when the queue is
empty again, so a reader knows the failed deployment was dealt with."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.deploy.settings import VARIANT, EndpointSettings


@dataclass(frozen=True)
class RollbackAlarms:
    errors: cloudwatch.Alarm
    latency: cloudwatch.Alarm
    error_metric: cloudwatch.Metric
    latency_metric: cloudwatch.Metric


def endpoint_metric(
    settings: EndpointSettings, name: str, statistic: str, period: Duration | None = None
) -> cloudwatch.Metric:
    """One metric of the endpoint's variant; ``period`` None: CloudWatch's default (5 minutes)."""
    return cloudwatch.Metric(
        namespace="AWS/SageMaker",
        metric_name=name,
        dimensions_map={"EndpointName": settings.endpoint_name, "VariantName": VARIANT},
        statistic=statistic,
        period=period,
    )


def notify(alarm: cloudwatch.Alarm, topic: sns.ITopic, *, when_ok: bool = False) -> None:
    """Publish to ``topic`` when ``alarm`` goes to ALARM (PutMetricAlarm's AlarmActions), and also when
    it returns to OK (OKActions) if ``when_ok``; never on INSUFFICIENT_DATA."""
    alarm.add_alarm_action(cw_actions.SnsAction(topic))
    if when_ok:
        alarm.add_ok_action(cw_actions.SnsAction(topic))


def add_rollback_alarms(
    scope: Construct, settings: EndpointSettings, alarm_topic: sns.ITopic
) -> RollbackAlarms:
    error_metric = endpoint_metric(settings, "Invocation5XXErrors", "Sum", Duration.minutes(1))
    latency_metric = endpoint_metric(settings, "ModelLatency", "p90", Duration.minutes(1))
    errors = cloudwatch.Alarm(
        scope,
        "Errors",
        alarm_name=settings.error_alarm_name,
        metric=error_metric,
        threshold=1,
        evaluation_periods=2,
        datapoints_to_alarm=2,
        treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        alarm_description="5XX errors from the endpoint: a blue/green rollout rolls back on this",
    )
    latency = cloudwatch.Alarm(
        scope,
        "Latency",
        alarm_name=settings.latency_alarm_name,
        metric=latency_metric,
        threshold=settings.latency_alarm_ms * 1000,  # ModelLatency is in microseconds
        evaluation_periods=3,
        datapoints_to_alarm=3,
        treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        alarm_description=f"p90 model latency above {settings.latency_alarm_ms} ms: a blue/green rollout rolls back on this",
    )
    for alarm in (errors, latency):
        notify(alarm, alarm_topic)
    return RollbackAlarms(errors, latency, error_metric, latency_metric)


def add_dead_letter_alarm(
    scope: Construct, settings: EndpointSettings, dead_letters: sqs.IQueue, alarm_topic: sns.ITopic
) -> cloudwatch.Alarm:
    """A deployment that ran out of retries (e.g. the endpoint stayed busy) must not vanish silently."""
    alarm = cloudwatch.Alarm(
        scope,
        "DeadLetterAlarm",
        alarm_name=f"{settings.endpoint_name}-deployer-dead-letters",
        metric=dead_letters.metric_approximate_number_of_messages_visible(period=Duration.minutes(5)),
        threshold=1,
        evaluation_periods=1,
        treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        alarm_description="An approval event could not be deployed after retries; see the deployer's log",
    )
    notify(alarm, alarm_topic, when_ok=True)
    return alarm


def add_dashboard(
    scope: Construct, settings: EndpointSettings, alarms: RollbackAlarms
) -> cloudwatch.Dashboard:
    dashboard = cloudwatch.Dashboard(scope, "Dashboard", dashboard_name=f"{settings.endpoint_name}-overview")
    dashboard.add_widgets(
        cloudwatch.GraphWidget(title="Invocations", left=[endpoint_metric(settings, "Invocations", "Sum")]),
        cloudwatch.GraphWidget(
            title="Model latency p50/p90 (us)",
            left=[alarms.latency_metric.with_(statistic="p50"), alarms.latency_metric],
        ),
        cloudwatch.GraphWidget(
            title="Errors",
            left=[alarms.error_metric, endpoint_metric(settings, "Invocation4XXErrors", "Sum")],
        ),
        cloudwatch.AlarmStatusWidget(title="Rollback alarms", alarms=[alarms.errors, alarms.latency]),
        cloudwatch.GraphWidget(
            title="Pipeline executions",
            left=[
                cloudwatch.Metric(
                    namespace="AWS/Sagemaker/ModelBuildingPipeline",
                    metric_name=name,
                    dimensions_map={"PipelineName": settings.pipeline_name},
                    statistic="Sum",
                    period=Duration.hours(1),
                )
                for name in ("ExecutionStarted", "ExecutionSucceeded", "ExecutionFailed")
            ],
        ),
    )
    return dashboard
