"""The EventBridge rules that invoke the deployer: an approved package of this project's group (deploy
it), and this endpoint in service (register its autoscaling, which cannot be done while it is Creating).
Both retry twice and then leave the event in the dead-letter queue."""

from __future__ import annotations

from typing import Any

from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.deploy.settings import EndpointSettings


def add_deployer_rules(
    scope: Construct, settings: EndpointSettings, function: lambda_.IFunction, dead_letters: sqs.IQueue
) -> events.Rule:
    """The approval rule (returned) and the in-service rule, both invoking ``function``."""

    def invoke_on(
        construct_id: str, description: str, detail_type: str, detail: dict[str, Any]
    ) -> events.Rule:
        return events.Rule(
            scope,
            construct_id,
            description=description,
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"], detail_type=[detail_type], detail=detail
            ),
            targets=[targets.LambdaFunction(function, retry_attempts=2, dead_letter_queue=dead_letters)],
        )

    invoke_on(
        "OnEndpointInService",
        f"{settings.endpoint_name} in service -> register autoscaling",
        "SageMaker Endpoint State Change",
        {"EndpointName": [settings.endpoint_name], "EndpointStatus": ["IN_SERVICE"]},
    )
    return invoke_on(
        "OnApproval",
        f"Approved packages of {settings.model_package_group} -> {settings.endpoint_name}",
        "SageMaker Model Package State Change",
        {"ModelPackageGroupName": [settings.model_package_group], "ModelApprovalStatus": ["Approved"]},
    )
