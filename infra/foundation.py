"""Foundation: the KMS key, the buckets, the private network every job and endpoint runs in, and the
alarm topic.

* One customer-managed KMS key (rotation on) encrypts the buckets, job volumes and outputs, logs,
  the SNS topic and endpoint data capture.
* Buckets: ``data`` (datasets, base models) and ``artifacts`` (job outputs, checkpoints, the Neuron
  compile cache, MLflow, data capture): versioned, KMS, TLS-only, public access blocked, server
  access logs to an ``access-logs`` bucket. Checkpoints and the compile cache expire by lifecycle rule.
* A VPC with private isolated subnets only (no NAT, no internet), the S3 gateway endpoint and the
  interface endpoints the jobs need, and a security group for jobs that allows HTTPS to the
  endpoints and traffic between the nodes of one multi-node training job.
* The alarm topic (KMS-encrypted) every alarm and failure notification publishes to.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from infra.nag import acknowledge_hipaa_and_nist
from infra.names import PlatformNames
from pipelines.definition.builder import CHECKPOINT_PREFIX, COMPILE_CACHE_PREFIX

# Interface endpoints jobs and endpoints use with no internet: SageMaker API and runtime (the
# pipeline's jobs, the deployer), ECR (image pulls), CloudWatch Logs and Monitoring, STS, KMS, and
# SageMaker Experiments, which serves the managed MLflow tracking servers (<region>.experiments.sagemaker.aws).
INTERFACE_ENDPOINTS = {
    "SageMakerApi": ec2.InterfaceVpcEndpointAwsService.SAGEMAKER_API,
    "SageMakerRuntime": ec2.InterfaceVpcEndpointAwsService.SAGEMAKER_RUNTIME,
    "EcrApi": ec2.InterfaceVpcEndpointAwsService.ECR,
    "EcrDocker": ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER,
    "Logs": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
    "Monitoring": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_MONITORING,
    "Sts": ec2.InterfaceVpcEndpointAwsService.STS,
    "Kms": ec2.InterfaceVpcEndpointAwsService.KMS,
    "SageMakerExperiments": ec2.InterfaceVpcEndpointAwsService.SAGEMAKER_EXPERIMENTS,
    # The endpoint deployer (a Lambda in these subnets) reports to SNS and registers autoscaling.
    "Sns": ec2.InterfaceVpcEndpointAwsService.SNS,
    "ApplicationAutoscaling": ec2.InterfaceVpcEndpointAwsService.APPLICATION_AUTOSCALING,
}


class EncryptionKey(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, alias: str) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(
            self,
            "Key",
            alias=alias,
            enable_key_rotation=True,
            description="Encrypts the LLM platform's data, artifacts, job volumes, logs and topics",
            removal_policy=RemovalPolicy.RETAIN,
        )
        # CloudWatch Logs encrypts log groups with this key (the service principal of this region).
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal(f"logs.{Stack.of(self).region}.amazonaws.com")],
                actions=[
                    "kms:Encrypt*",
                    "kms:Decrypt*",
                    "kms:ReEncrypt*",
                    "kms:GenerateDataKey*",
                    "kms:Describe*",
                ],
                resources=["*"],  # in a key policy "*" means this key
                conditions={
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn": f"arn:{Stack.of(self).partition}:logs:{Stack.of(self).region}:{Stack.of(self).account}:*"
                    }
                },
            )
        )
        # CloudWatch alarms publish to the encrypted alarm topic (their actions are silently dropped otherwise).
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
                conditions={"StringEquals": {"aws:SourceAccount": Stack.of(self).account}},
            )
        )


class PlatformBuckets(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, key: kms.IKey, names: PlatformNames) -> None:
        super().__init__(scope, construct_id)
        # The access-log bucket itself: S3-managed encryption (server access logging cannot deliver to
        # SSE-KMS buckets), versioned, TLS-only, no public access.
        self.logs = s3.Bucket(
            self,
            "AccessLogs",
            bucket_name=names.bucket("access-logs"),
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            versioned=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
            removal_policy=RemovalPolicy.RETAIN,
            lifecycle_rules=[s3.LifecycleRule(id="expire-access-logs", expiration=Duration.days(400))],
        )
        replication = (
            "Cross-region replication needs a second region and doubles storage cost; it is a "
            "deployment decision. Objects are versioned and retained; add a replication rule to a bucket "
            "in your DR region where the data must survive a regional outage"
        )
        acknowledge_hipaa_and_nist(
            self.logs.node.default_child,
            "S3DefaultEncryptionKMS",
            "S3 server access logging cannot deliver to SSE-KMS buckets; SSE-S3 is what AWS supports here",
        )
        self.data = self._bucket("Data", names.bucket("data"), key, "data/", [])
        self.artifacts = self._bucket(
            "Artifacts",
            names.bucket("artifacts"),
            key,
            "artifacts/",
            [
                s3.LifecycleRule(
                    id="expire-checkpoints",
                    prefix=f"{CHECKPOINT_PREFIX}/",
                    expiration=Duration.days(30),
                    noncurrent_version_expiration=Duration.days(1),
                ),
                s3.LifecycleRule(
                    id="expire-compile-cache",
                    prefix=f"{COMPILE_CACHE_PREFIX}/",
                    expiration=Duration.days(90),
                    noncurrent_version_expiration=Duration.days(1),
                ),
                s3.LifecycleRule(
                    id="abort-incomplete-uploads", abort_incomplete_multipart_upload_after=Duration.days(7)
                ),
            ],
        )
        for bucket in (self.logs, self.data, self.artifacts):
            acknowledge_hipaa_and_nist(bucket.node.default_child, "S3BucketReplicationEnabled", replication)

    def _bucket(
        self, name: str, bucket_name: str, key: kms.IKey, log_prefix: str, rules: list[s3.LifecycleRule]
    ) -> s3.Bucket:
        return s3.Bucket(
            self,
            name,
            bucket_name=bucket_name,
            encryption=s3.BucketEncryption.KMS,
            encryption_key=key,
            bucket_key_enabled=True,
            enforce_ssl=True,
            versioned=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            server_access_logs_bucket=self.logs,
            server_access_logs_prefix=log_prefix,
            lifecycle_rules=rules or None,
            removal_policy=RemovalPolicy.RETAIN,
        )


class JobNetwork(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        cidr: str,
        availability_zones: list[str],
        key: kms.IKey,
        log_retention_days: int,
    ) -> None:
        super().__init__(scope, construct_id)
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(cidr),
            availability_zones=availability_zones,
            nat_gateways=0,
            restrict_default_security_group=True,
            subnet_configuration=[
                ec2.SubnetConfiguration(
                    name="jobs", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=20
                )
            ],
            gateway_endpoints={
                "S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3)
            },
        )
        self._log_all_traffic(key, log_retention_days)
        self.security_group = self._job_security_group()
        self._interface_endpoints(cidr)

    def _log_all_traffic(self, key: kms.IKey, log_retention_days: int) -> None:
        flow_logs = logs.LogGroup(
            self,
            "FlowLogs",
            encryption_key=key,
            retention=retention(log_retention_days),
            removal_policy=RemovalPolicy.RETAIN,
        )
        flow_log = self.vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs),
            traffic_type=ec2.FlowLogTrafficType.ALL,
        )
        acknowledge_hipaa_and_nist(
            flow_log.node.find_child("IAMRole").node.find_child("DefaultPolicy").node.default_child,
            "IAMNoInlinePolicy",
            "CDK's own flow-log role: its inline policy only writes to this VPC's flow-log group",
        )

    def _job_security_group(self) -> ec2.SecurityGroup:
        jobs = ec2.SecurityGroup(
            self,
            "Jobs",
            vpc=self.vpc,
            allow_all_outbound=False,
            description="SageMaker jobs and endpoints: HTTPS to the VPC endpoints, traffic within one job",
        )
        # Multi-node training (torchrun, EFA-less collectives) talks between its own instances.
        jobs.add_ingress_rule(jobs, ec2.Port.all_tcp(), "between nodes of one job")
        jobs.add_egress_rule(jobs, ec2.Port.all_tcp(), "between nodes of one job")
        # Inter-container traffic encryption (IPsec) between the nodes of a job needs IKE and ESP.
        for port, what in (
            (ec2.Port.udp(500), "IKE for inter-container encryption"),
            (
                ec2.Port(protocol=ec2.Protocol.ESP, string_representation="ESP"),
                "ESP for inter-container encryption",
            ),
        ):
            jobs.add_ingress_rule(jobs, port, what)
            jobs.add_egress_rule(jobs, port, what)
        # HTTPS to any address: the subnets are isolated (no NAT, no internet gateway), so the only places
        # reachable are the interface endpoints and S3 through the gateway endpoint, whose addresses are
        # a regional prefix list that synth cannot know without a lookup.
        jobs.add_egress_rule(
            ec2.Peer.any_ipv4(),
            ec2.Port.tcp(443),
            "HTTPS to the VPC endpoints (isolated subnets: nothing else is routable)",
        )
        return jobs

    def _interface_endpoints(self, cidr: str) -> None:
        endpoint_sg = ec2.SecurityGroup(
            self,
            "Endpoints",
            vpc=self.vpc,
            allow_all_outbound=False,
            description="Interface endpoints: HTTPS from inside the VPC",
        )
        # The literal CIDR (not the VPC's token) so the rule checks can read it.
        endpoint_sg.add_ingress_rule(ec2.Peer.ipv4(cidr), ec2.Port.tcp(443), "HTTPS from the VPC")
        for name, service in INTERFACE_ENDPOINTS.items():
            # open=False: CDK would add a second ingress from the VPC's CIDR token; ours above is literal.
            self.vpc.add_interface_endpoint(
                name, service=service, private_dns_enabled=True, open=False, security_groups=[endpoint_sg]
            )


def add_alarm_topic(
    scope: Construct, *, display_name: str, key: kms.IKey, notification_email: str | None
) -> sns.Topic:
    """The encrypted topic every alarm and failure notification goes to; CloudWatch alarms of this account
    may publish to it, and ``notification_email`` (if any) is subscribed."""
    topic = sns.Topic(scope, "Alarms", display_name=display_name, master_key=key, enforce_ssl=True)
    topic.add_to_resource_policy(
        iam.PolicyStatement(
            sid="CloudWatchAlarms",
            principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
            actions=["sns:Publish"],
            resources=[topic.topic_arn],
            conditions={"StringEquals": {"aws:SourceAccount": Stack.of(scope).account}},
        )
    )
    if notification_email:
        topic.add_subscription(subscriptions.EmailSubscription(notification_email))
    return topic


def retention(days: int) -> logs.RetentionDays:
    """The config allows a year or more (config/schema.py, InfraSection.log_retention_days)."""
    by_days = {
        365: logs.RetentionDays.ONE_YEAR,
        400: logs.RetentionDays.THIRTEEN_MONTHS,
        545: logs.RetentionDays.EIGHTEEN_MONTHS,
        731: logs.RetentionDays.TWO_YEARS,
        1096: logs.RetentionDays.THREE_YEARS,
        1827: logs.RetentionDays.FIVE_YEARS,
        2192: logs.RetentionDays.SIX_YEARS,
        2557: logs.RetentionDays.SEVEN_YEARS,
        2922: logs.RetentionDays.EIGHT_YEARS,
        3288: logs.RetentionDays.NINE_YEARS,
        3653: logs.RetentionDays.TEN_YEARS,
    }
    return by_days[days]
