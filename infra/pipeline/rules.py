"""The EventBridge rules around the pipeline: a failed execution notifies the alarm topic, and an
optional schedule starts the pipeline with a role that may do nothing else."""

from __future__ import annotations

from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sns as sns
from constructs import Construct

from infra.roles import role_with_policy


def add_failure_notification(
    scope: Construct, *, pipeline_name: str, pipeline_arn: str, alarm_topic: sns.ITopic
) -> events.Rule:
    return events.Rule(
        scope,
        "OnFailure",
        description=f"{pipeline_name} execution failed",
        event_pattern=events.EventPattern(
            source=["aws.sagemaker"],
            detail_type=["SageMaker Model Building Pipeline Execution Status Change"],
            detail={"currentPipelineExecutionStatus": ["Failed"], "pipelineArn": [pipeline_arn]},
        ),
        targets=[targets.SnsTopic(alarm_topic)],
    )


def add_schedule(scope: Construct, *, schedule: str, pipeline_name: str, pipeline_arn: str) -> events.CfnRule:
    """``schedule``: an EventBridge expression, e.g. ``rate(7 days)``."""
    start = role_with_policy(
        scope,
        "ScheduleRole",
        "SchedulePolicy",
        service="events.amazonaws.com",
        role_description="Starts the fine-tune pipeline on its schedule",
        policy_description="Start this pipeline",
        statements=[
            iam.PolicyStatement(actions=["sagemaker:StartPipelineExecution"], resources=[pipeline_arn])
        ],
    )
    return events.CfnRule(
        scope,
        "Schedule",
        schedule_expression=schedule,
        description=f"Start {pipeline_name} on a schedule",
        targets=[
            events.CfnRule.TargetProperty(id="pipeline", arn=pipeline_arn, role_arn=start.role.role_arn)
        ],
    )
