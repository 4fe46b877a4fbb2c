"""Approval-driven deployment: an approved model package becomes the Neuron (inf2 or trn2) endpoint.

An EventBridge rule matches "SageMaker Model Package State Change" events of this project's group
with status Approved, and invokes the deployer Lambda (``runtime/deployer.py``, beside this file).
The endpoint itself is created by that Lambda at approval time (it does not exist at deploy time);
this construct provides what it needs. Each part is one module of this folder:

* ``endpoint_role``: the endpoint's execution role (SageMaker assumes it to host the model);
* ``monitoring``: the two rollback alarms (5XX errors, model latency) the blue/green canary watches,
  the dead-letter alarm, and a dashboard;
* ``deployer_function``: the Lambda, its role, log group and dead-letter queue;
* ``rules``: the approval and in-service rules that invoke it.

The parts create their resources directly in this construct, so their logical ids do not depend on
how the code is divided. Settings that break a SageMaker deploy rule botocore cannot check
(``runtime/service_rules.py``) stop the synth here, before the deployer would refuse every approval.
"""

from __future__ import annotations

from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from constructs import Construct

from infra.deploy.deployer_function import add_dead_letter_queue, add_deployer_function
from infra.deploy.endpoint_role import add_endpoint_role
from infra.deploy.monitoring import add_dashboard, add_dead_letter_alarm, add_rollback_alarms
from infra.deploy.rules import add_deployer_rules
from infra.deploy.settings import EndpointSettings
from infra.names import PlatformNames
from training.errors import UserError, format_problems


class EndpointDeployer(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: EndpointSettings,
        names: PlatformNames,
        artifacts: s3.IBucket,
        key: kms.IKey,
        vpc: ec2.IVpc,
        security_group: ec2.ISecurityGroup,
        inference_repository: ecr.IRepository,
        alarm_topic: sns.ITopic,
    ) -> None:
        super().__init__(scope, construct_id)
        problems = settings.service_rule_problems()
        if problems:
            raise UserError(
                format_problems(
                    "infra.endpoint breaks SageMaker deploy rules, so the deployer would refuse every approval:",
                    problems,
                )
            )
        self.rollback_alarms = add_rollback_alarms(self, settings, alarm_topic)
        self.endpoint_role = add_endpoint_role(
            self,
            settings=settings,
            names=names,
            artifacts=artifacts,
            key=key,
            inference_repository=inference_repository,
            rollback_alarms=self.rollback_alarms,
        )
        self.dashboard = add_dashboard(self, settings, self.rollback_alarms)
        self.dead_letters = add_dead_letter_queue(self, key)
        self.function = add_deployer_function(
            self,
            settings=settings,
            names=names,
            artifacts=artifacts,
            key=key,
            vpc=vpc,
            security_group=security_group,
            alarm_topic=alarm_topic,
            endpoint_role=self.endpoint_role,
            dead_letters=self.dead_letters,
        )
        add_dead_letter_alarm(self, settings, self.dead_letters, alarm_topic)
        self.approval_rule = add_deployer_rules(self, settings, self.function, self.dead_letters)
