"""The SageMaker Pipeline, generated from the project config with the SageMaker Python SDK v3.

    Prepare (CPU processing) -> FineTune (Trainium training job) -> Evaluate (CPU processing)
      -> QualityGate: metric >= threshold ? [CompileForInferentia -> RegisterModel] : [QualityGateFailed]

Every step runs the one container entrypoint (``python -m containers.entrypoint <command>``) in the
training image; the registered model package points at the inference image. Generation is offline
and deterministic (``pipelines/definition/sdk.py``): no AWS call, no credentials, no timestamps, and no
SDK ``SourceCode`` upload (the code is baked into the images). Deploy-time values are ``${Name}``
placeholders (``pipelines/definition/placeholders.py``) that the CDK stack fills in with ``Fn.sub``.

Regenerate the golden copy after an intended change: ``make golden``.
"""

from __future__ import annotations

import json
from typing import Any

from config.schema import ProjectConfig
from containers.contract import CHECKPOINTS, ENTRYPOINT, MODEL, PROCESSING
from inference.serving_contract import SHAPE_KEYS, SM_ON_MODEL
from pipelines.definition.parameters import PARAMETER_HYPERPARAMETERS, parameter_specs
from pipelines.definition.placeholders import MLFLOW_TRACKING, job_role_arn, ref, subnet_placeholders
from pipelines.definition.service_rules import check_definition, has_local_storage
from training.hyperparameters import to_sagemaker_strings
from training.metrics import METRIC_REGEXES
from training.neuron_sdk import MALLOC_ARENA_MAX, NEURON_CC_FLAGS

# Every job's own environment (the request's Environment). The jobs run in a VPC without internet
# access: HF_HUB_OFFLINE=1 makes a Hugging Face Hub lookup fail at once instead of stalling on connect
# timeouts (huggingface_hub docs, package_reference/environment_variables: HF_HUB_OFFLINE "no HTTP calls
# are made to the Hugging Face Hub").
JOB_ENVIRONMENT = {"PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}

# Step names are the keys of `Get: Steps.<name>...` references and what Studio shows in the graph.
# Prefixes of the artifacts bucket that the pipeline writes; infra/foundation.py gives them lifecycle rules.
CHECKPOINT_PREFIX = "checkpoints"
COMPILE_CACHE_PREFIX = "neuron-cache"

PREPARE, FINETUNE, EVALUATE, GATE, FAIL, COMPILE, REGISTER = (
    "Prepare",
    "FineTune",
    "Evaluate",
    "QualityGate",
    "QualityGateFailed",
    "CompileForInferentia",
    "RegisterModel",
)


class _Builder:
    """Builds the steps in order; each step's method reads like the job it defines."""

    def __init__(self, cfg: ProjectConfig, session: Any) -> None:
        from sagemaker.core.workflow.execution_variables import ExecutionVariables
        from sagemaker.core.workflow.functions import Join
        from sagemaker.core.workflow.parameters import ParameterFloat, ParameterInteger, ParameterString

        self.cfg = cfg
        self.session = session
        self.Join = Join
        kinds = {"String": ParameterString, "Integer": ParameterInteger, "Float": ParameterFloat}
        self.params = {}
        for spec in parameter_specs(cfg):
            kwargs: dict[str, Any] = {"name": spec.name, "default_value": spec.default}
            if spec.enum:
                kwargs["enum_values"] = list(spec.enum)
            self.params[spec.name] = kinds[spec.kind](**kwargs)
        self.role = job_role_arn()
        self.image = ref("TrainingImageUri")
        self.kms = ref("KmsKeyArn")
        self.subnets = [ref(s) for s in subnet_placeholders(cfg.pipeline.subnet_count)]
        self.security_groups = [ref("JobSecurityGroupId")]
        self.execution_id = ExecutionVariables.PIPELINE_EXECUTION_ID

    # ---- shared pieces -------------------------------------------------------------------------

    def s3_output(self, step: str, name: str) -> Any:
        """s3://<artifacts>/<pipeline>/<execution id>/<step>/<name>. The execution id keeps runs apart;
        SageMaker's cache key for processing is AppSpecification, Environment and ProcessingInputs (not
        ProcessingOutputConfig), so caching still hits and a hit reuses the earlier execution's prefix."""
        return self.Join(
            on="/",
            values=[f"s3://{ref('ArtifactsBucket')}", self.cfg.pipeline_name, self.execution_id, step, name],
        )

    def network(self, isolated: bool) -> Any:
        from sagemaker.core.network import NetworkConfig

        return NetworkConfig(
            enable_network_isolation=isolated,
            security_group_ids=self.security_groups,
            subnets=self.subnets,
            encrypt_inter_container_traffic=True,
        )

    def volume_key(self, instance_type: str) -> Any:
        """The KMS key for the job's EBS volume, or None where SageMaker refuses one: an instance type
        with local NVMe storage (trn1, trn2, g5, ...) gets no EBS volume, and its instance storage is
        encrypted by the instance's hardware (``service_rules``, API_ResourceConfig.VolumeKmsKeyId)."""
        return None if has_local_storage(instance_type) else self.kms

    def processor(self, command: str, instance_type: str) -> Any:
        from sagemaker.core.processing import Processor

        p = self.cfg.pipeline
        return Processor(
            role=self.role,
            image_uri=self.image,
            instance_count=1,
            instance_type=instance_type,
            entrypoint=[*ENTRYPOINT, command],
            volume_size_in_gb=p.volume_size_gb,
            volume_kms_key=self.volume_key(instance_type),
            output_kms_key=self.kms,
            max_runtime_in_seconds=p.processing_max_runtime_seconds,
            sagemaker_session=self.session,
            env=JOB_ENVIRONMENT,
            # Prepare, evaluate and compile read S3 inputs and write S3 outputs through SageMaker itself
            # and call nothing: no network at all.
            network_config=self.network(isolated=True),
        )

    @staticmethod
    def s3_input(name: str, uri: Any) -> Any:
        from sagemaker.core.shapes import ProcessingInput, ProcessingS3Input

        return ProcessingInput(
            input_name=name,
            s3_input=ProcessingS3Input(
                s3_uri=uri,
                local_path=f"{PROCESSING}/{name}",
                s3_data_type="S3Prefix",
                s3_input_mode="File",
                s3_data_distribution_type="FullyReplicated",
            ),
        )

    def output(self, step: str, name: str) -> Any:
        from sagemaker.core.shapes import ProcessingOutput, ProcessingS3Output

        return ProcessingOutput(
            output_name=name,
            s3_output=ProcessingS3Output(
                s3_uri=self.s3_output(step, name),
                local_path=f"{PROCESSING}/{name}",
                s3_upload_mode="EndOfJob",
            ),
        )

    def cache(self) -> Any:
        from sagemaker.mlops.workflow.steps import CacheConfig

        return CacheConfig(enable_caching=True, expire_after=self.cfg.pipeline.cache_expire_after)

    @staticmethod
    def retries() -> list[Any]:
        from sagemaker.mlops.workflow.retry import (
            SageMakerJobExceptionTypeEnum,
            SageMakerJobStepRetryPolicy,
            StepExceptionTypeEnum,
            StepRetryPolicy,
        )

        return [
            # The Pipelines service itself throttled or failed: retry soon.
            StepRetryPolicy(
                exception_types=[StepExceptionTypeEnum.SERVICE_FAULT, StepExceptionTypeEnum.THROTTLING],
                interval_seconds=30,
                backoff_rate=2.0,
                max_attempts=5,
            ),
            # No Trainium capacity or an account limit: wait longer between attempts.
            SageMakerJobStepRetryPolicy(
                exception_types=[
                    SageMakerJobExceptionTypeEnum.CAPACITY_ERROR,
                    SageMakerJobExceptionTypeEnum.RESOURCE_LIMIT,
                    SageMakerJobExceptionTypeEnum.INTERNAL_ERROR,
                ],
                interval_seconds=600,
                backoff_rate=1.5,
                max_attempts=4,
            ),
        ]

    # ---- steps ---------------------------------------------------------------------------------

    def prepare(self) -> tuple[Any, Any]:
        from sagemaker.core.workflow.properties import PropertyFile
        from sagemaker.mlops.workflow.steps import ProcessingStep

        hp = self.cfg.training
        args = ["--max-seq-length", str(hp.max_seq_length), "--overlong", hp.overlong]
        if hp.skip_invalid_lines:
            args.append("--skip-invalid-lines")
        run = self.processor("prepare", self.cfg.pipeline.instances.prepare).run(
            inputs=[
                self.s3_input("train", self.params["TrainDataS3Uri"]),
                self.s3_input("validation", self.params["ValidationDataS3Uri"]),
                self.s3_input("model", self.params["BaseModelS3Uri"]),
            ],
            outputs=[
                self.output(PREPARE, "packed_train"),
                self.output(PREPARE, "packed_validation"),
                self.output(PREPARE, "stats"),
            ],
            arguments=args,
        )
        stats = PropertyFile(name="DataStats", output_name="stats", path="data_stats.json")
        step = ProcessingStep(
            name=PREPARE,
            step_args=run,
            display_name="Prepare data",
            description="Validate the JSONL like training does, tokenize with the base model's chat template and "
            f"pack into fixed blocks of {hp.max_seq_length} tokens once, so the Trainium job never tokenizes; "
            "writes data_stats.json.",
            property_files=[stats],
            cache_config=self.cache(),
            retry_policies=self.retries()[:1],
        )
        return step, stats

    def hyperparameters(self) -> dict[str, Any]:
        hp = self.cfg.training.model_copy(update={"precompile": False})
        values: dict[str, Any] = dict(to_sagemaker_strings(hp))
        for key, param in PARAMETER_HYPERPARAMETERS.items():
            # Hyperparameters are strings in CreateTrainingJob; to_string() makes the parameter one.
            values[key] = self.params[param].to_string()
        values["backend"] = self.params["TrainBackend"]
        return values

    def fixed_training_inputs_sha256(self) -> str:
        """Hash of what determines the fine-tune and is fixed in the definition (not a parameter)."""
        import hashlib

        fixed = {
            k: v
            for k, v in to_sagemaker_strings(self.cfg.training).items()
            if k not in PARAMETER_HYPERPARAMETERS and k not in ("backend", "precompile")
        }
        return hashlib.sha256(json.dumps(fixed, sort_keys=True).encode()).hexdigest()[:16]

    def checkpoint_uri(self, stats: Any, prepare: Any) -> Any:
        """A checkpoint prefix keyed by everything that determines the training, never by the execution.

        SageMaker's cache key for a training step includes CheckpointConfig. Keyed this way (data and base
        model hashes from the Prepare step, the hyperparameters, the instance type and count, the image),
        an execution with the same inputs can hit the cache, and a job never starts from checkpoints of
        other training. Resuming from them (retries, spot, a rerun after an interruption) works with the
        torch backend; the neuron backend cannot resume yet (optimum-neuron 0.4.5) and starts over.
        """
        from sagemaker.core.workflow.functions import JsonGet

        def data(path: str) -> Any:
            return JsonGet(step_name=prepare.name, property_file=stats, json_path=path)

        settings = self.Join(
            on="-",
            values=[
                *(self.params[name] for name in (*PARAMETER_HYPERPARAMETERS.values(), "TrainBackend")),
                self.cfg.pipeline.instances.train,
                self.params["TrainInstanceCount"],
            ],
        )
        return self.Join(
            on="/",
            values=[
                f"s3://{ref('ArtifactsBucket')}",
                CHECKPOINT_PREFIX,
                self.cfg.pipeline_name,
                data("content_sha256"),
                data("base_model_sha256"),
                self.fixed_training_inputs_sha256(),
                settings,
                # The image (its URI carries the content hash CDK gives image assets): new code, new prefix.
                ref("TrainingImageUri"),
                "checkpoints",
            ],
        )

    def training_environment(self) -> dict[str, Any]:
        """The FineTune container's environment: the Neuron compiler's settings and cache, and MLflow."""
        env: dict[str, Any] = {
            "NEURON_COMPILE_CACHE_URL": f"s3://{ref('ArtifactsBucket')}/{COMPILE_CACHE_PREFIX}/",
            "NEURON_CC_FLAGS": NEURON_CC_FLAGS,
            "MALLOC_ARENA_MAX": MALLOC_ARENA_MAX,
            **JOB_ENVIRONMENT,
        }
        if self.cfg.infra.mlflow:
            # The tracking server's ARN is its MLFLOW_TRACKING_URI: the sagemaker-mlflow plugin in the
            # training image turns it into SigV4-signed calls through the experiments VPC endpoint.
            env.update(
                MLFLOW_TRACKING_URI=ref(MLFLOW_TRACKING), MLFLOW_EXPERIMENT_NAME=self.cfg.pipeline_name
            )
        return env

    def finetune(self, prepare: Any, stats: Any) -> Any:
        from sagemaker.core.shapes import CheckpointConfig, MetricDefinition, OutputDataConfig
        from sagemaker.core.training.configs import Compute, InputData, Networking, StoppingCondition
        from sagemaker.mlops.workflow.steps import TrainingStep
        from sagemaker.train.model_trainer import ModelTrainer

        p = self.cfg.pipeline
        outputs = prepare.properties.ProcessingOutputConfig.Outputs
        trainer = ModelTrainer(
            sagemaker_session=self.session,
            role=self.role,
            training_image=self.image,
            base_job_name="finetune",
            compute=Compute(
                instance_type=p.instances.train,
                instance_count=self.params["TrainInstanceCount"],
                volume_size_in_gb=p.volume_size_gb,
                volume_kms_key_id=self.volume_key(p.instances.train),
                enable_managed_spot_training=p.spot,
            ),
            # Not network-isolated: the Neuron compile cache (NEURON_COMPILE_CACHE_URL) and MLflow are
            # reached from inside the container, through the VPC endpoints.
            networking=Networking(
                subnets=self.subnets,
                security_group_ids=self.security_groups,
                enable_network_isolation=False,
                enable_inter_container_traffic_encryption=True,
            ),
            stopping_condition=StoppingCondition(
                max_runtime_in_seconds=p.train_max_runtime_seconds,
                max_wait_time_in_seconds=p.spot_max_wait_seconds if p.spot else None,
            ),
            checkpoint_config=CheckpointConfig(
                s3_uri=self.checkpoint_uri(stats, prepare), local_path=CHECKPOINTS
            ),
            output_data_config=OutputDataConfig(
                s3_output_path=self.Join(
                    on="/",
                    values=[
                        f"s3://{ref('ArtifactsBucket')}",
                        self.cfg.pipeline_name,
                        self.execution_id,
                        FINETUNE,
                    ],
                ),
                kms_key_id=self.kms,
            ),
            hyperparameters=self.hyperparameters(),
            environment=self.training_environment(),
        ).with_metric_definitions(
            [MetricDefinition(name=name, regex=regex) for name, regex in METRIC_REGEXES.items()]
        )
        run = trainer.train(
            input_data_config=[
                InputData(channel_name="train", data_source=outputs["packed_train"].S3Output.S3Uri),
                InputData(channel_name="validation", data_source=outputs["packed_validation"].S3Output.S3Uri),
                InputData(channel_name="model", data_source=self.params["BaseModelS3Uri"]),
            ]
        )
        # Cached: its cache key (image, hyperparameters, channels, environment, and the checkpoint prefix,
        # keyed by the data and base model hashes) fixes its output up to float rounding.
        return TrainingStep(
            name=FINETUNE,
            step_args=run,
            display_name="Fine-tune on Trainium (LoRA)",
            cache_config=self.cache(),
            description="LoRA fine-tune with optimum-neuron under torchrun on the packed blocks (one input shape); "
            "Neuron compile cache on S3, checkpoints on S3 for spot and retries; writes the merged model.",
            retry_policies=self.retries(),
        )

    def evaluate(self, finetune: Any) -> tuple[Any, Any]:
        from sagemaker.core.workflow.properties import PropertyFile
        from sagemaker.mlops.workflow.steps import ProcessingStep

        e = self.cfg.evaluation
        run = self.processor("evaluate", self.cfg.pipeline.instances.evaluate).run(
            inputs=[
                self.s3_input("model", finetune.properties.ModelArtifacts.S3ModelArtifacts),
                self.s3_input("validation", self.params["ValidationDataS3Uri"]),
                self.s3_input("base_model", self.params["BaseModelS3Uri"]),
            ],
            outputs=[self.output(EVALUATE, "evaluation")],
            arguments=[
                "--batch-size",
                str(e.batch_size),
                "--max-new-tokens",
                str(e.max_new_tokens),
                "--max-seq-length",
                str(self.cfg.training.max_seq_length),
            ],
        )
        report = PropertyFile(name="EvaluationReport", output_name="evaluation", path="evaluation.json")
        step = ProcessingStep(
            name=EVALUATE,
            step_args=run,
            display_name="Evaluate against the base model",
            description="Held-out loss, perplexity and exact match from batched greedy generation (fixed shapes), "
            "for the fine-tune and the base model; writes evaluation.json.",
            property_files=[report],
            cache_config=self.cache(),
            retry_policies=self.retries()[:1],
        )
        return step, report

    def compile(self, finetune: Any) -> tuple[Any, Any]:
        from sagemaker.core.workflow.properties import PropertyFile
        from sagemaker.mlops.workflow.steps import ProcessingStep

        s = self.cfg.serving
        target = self.cfg.compile_target
        run = self.processor("compile", self.cfg.pipeline.instances.compile).run(
            inputs=[self.s3_input("model", finetune.properties.ModelArtifacts.S3ModelArtifacts)],
            outputs=[self.output(COMPILE, "compiled")],
            arguments=[
                "--target",
                self.params["CompileTarget"],
                "--batch-size",
                str(s.batch_size),
                "--sequence-length",
                str(s.sequence_length),
                "--tensor-parallel-size",
                str(s.tensor_parallel_size),
                "--dtype",
                s.dtype,
                "--max-new-tokens",
                str(max(1, min(256, s.sequence_length // 2))),
                "--archive",
            ],
        )
        report = PropertyFile(name="CompileReport", output_name="compiled", path="compile_report.json")
        step = ProcessingStep(
            name=COMPILE,
            step_args=run,
            display_name="Compile for Trainium 2" if target == "trn2" else "Compile for Inferentia 2",
            description=f"optimum-neuron export of the merged model at static batch_size={s.batch_size}, "
            f"sequence_length={s.sequence_length}, tensor_parallel_size={s.tensor_parallel_size}, {s.dtype}; "
            "needs host RAM, not a Neuron device (CompileTarget=cpu packages for a CPU endpoint instead). "
            "Writes model.tar.gz and compile_report.json.",
            property_files=[report],
            cache_config=self.cache(),
            retry_policies=self.retries()[:1],
        )
        return step, report

    def register(
        self, prepare: Any, stats: Any, evaluate: Any, evaluation: Any, compile_: Any, compile_report: Any
    ) -> Any:
        from sagemaker.core.model_metrics import MetricsSource, ModelMetrics
        from sagemaker.core.workflow.functions import JsonGet
        from sagemaker.mlops.workflow.model_step import ModelStep
        from sagemaker.serve.model_builder import ModelBuilder

        compiled = compile_.properties.ProcessingOutputConfig.Outputs["compiled"].S3Output.S3Uri
        evaluation_uri = evaluate.properties.ProcessingOutputConfig.Outputs["evaluation"].S3Output.S3Uri

        def from_compile(path: str) -> Any:
            return JsonGet(step_name=compile_.name, property_file=compile_report, json_path=path)

        # The vLLM Neuronx container reads its static shapes from SM_ON_*; they come from the compile report
        # itself, so the package can never disagree with the artifact it points at.
        env = {key: from_compile(f"serving_env.{key}") for key in SHAPE_KEYS}
        env[SM_ON_MODEL] = MODEL
        builder = ModelBuilder(
            image_uri=ref("InferenceImageUri"),
            s3_model_data_url=self.Join(on="/", values=[compiled, "model.tar.gz"]),
            role_arn=self.role,
            sagemaker_session=self.session,
            instance_type=self.cfg.serving.instance_types[0],
            env_vars=env,
            # The default ({"auto": True}) packs and uploads local code and adds SAGEMAKER_* variables.
            dependencies=None,
        )
        run = builder.register(
            model_package_group_name=self.cfg.model_package_group,
            content_types=["application/json"],
            response_types=["application/json"],
            inference_instances=list(self.cfg.serving.instance_types),
            model_metrics=ModelMetrics(
                model_statistics=MetricsSource(
                    content_type="application/json",
                    s3_uri=self.Join(on="/", values=[evaluation_uri, "evaluation.json"]),
                )
            ),
            approval_status=self.params["ModelApprovalStatus"],
            description=f"LoRA fine-tune of {self.cfg.training.base_model}, compiled for {self.cfg.compile_target}.",
            customer_metadata_properties={
                "source_commit": ref("SourceCommit"),
                "data_sha256": JsonGet(
                    step_name=prepare.name, property_file=stats, json_path="content_sha256"
                ),
                "mlflow_run_id": from_compile("provenance.mlflow_run_id"),
                "quality_metric": self.cfg.pipeline.quality_gate.metric,
                "transformers_version": from_compile("provenance.transformers"),
                "optimum_neuron_version": from_compile("provenance.optimum_neuron"),
                "neuronx_cc_version": from_compile("provenance.neuronx_cc"),
                "compiled_batch_size": from_compile("serving_env.SM_ON_BATCH_SIZE"),
                "compiled_sequence_length": from_compile("serving_env.SM_ON_SEQUENCE_LENGTH"),
                "compiled_tensor_parallel_size": from_compile("serving_env.SM_ON_TENSOR_PARALLEL_SIZE"),
            },
        )
        return ModelStep(
            name=REGISTER,
            step_args=run,
            display_name="Register in the Model Registry",
            description=f"Model package in {self.cfg.model_package_group}: inference image, compiled artifact, "
            f"SM_ON_* from the compile report, ml.{self.cfg.compile_target}.* instance types, evaluation.json as "
            "model quality.",
        )

    def gate(self, evaluate: Any, evaluation: Any, if_steps: list[Any]) -> Any:
        from sagemaker.core.workflow.conditions import ConditionGreaterThanOrEqualTo
        from sagemaker.core.workflow.functions import JsonGet
        from sagemaker.mlops.workflow.condition_step import ConditionStep
        from sagemaker.mlops.workflow.fail_step import FailStep

        metric = self.cfg.pipeline.quality_gate.metric
        value = JsonGet(
            step_name=evaluate.name, property_file=evaluation, json_path=f"metrics.{metric}.value"
        )
        threshold = self.params["QualityThreshold"]
        fail = FailStep(
            name=FAIL,
            display_name="Quality gate failed",
            description="Stops the run: the fine-tune is not good enough to compile and register.",
            error_message=self.Join(
                on="",
                values=[
                    f"Quality gate failed: {metric}=",
                    value,
                    " is below the threshold QualityThreshold=",
                    threshold,
                    f". Nothing was compiled or registered; see evaluation.json of step {EVALUATE}.",
                ],
            ),
        )
        return ConditionStep(
            name=GATE,
            display_name="Quality gate",
            description=f"{metric} from evaluation.json must be at least the QualityThreshold parameter.",
            conditions=[ConditionGreaterThanOrEqualTo(left=value, right=threshold)],
            if_steps=if_steps,
            else_steps=[fail],
        )


def build_pipeline(cfg: ProjectConfig) -> Any:
    """The sagemaker.mlops Pipeline object (offline session)."""
    from pipelines.definition.sdk import offline_session

    # First: the session sets the environment the SDK reads when it is first imported.
    session = offline_session(cfg.project.region, ref("ArtifactsBucket"))
    from sagemaker.mlops.workflow.pipeline import Pipeline

    b = _Builder(cfg, session)
    prepare, stats = b.prepare()
    finetune = b.finetune(prepare, stats)
    evaluate, evaluation = b.evaluate(finetune)
    compile_, compile_report = b.compile(finetune)
    register = b.register(prepare, stats, evaluate, evaluation, compile_, compile_report)
    gate = b.gate(evaluate, evaluation, if_steps=[compile_, register])
    return Pipeline(
        name=cfg.pipeline_name,
        parameters=list(b.params.values()),
        steps=[prepare, finetune, evaluate, gate],
        sagemaker_session=session,
        # No SageMaker Experiments: MLflow tracks the runs, and the SDK's default experiment config would
        # make every execution create an experiment and trials the pipeline role may not create.
        pipeline_experiment_config=None,
    )


def pipeline_definition(cfg: ProjectConfig) -> str:
    """The definition JSON, indented for readable diffs; identical bytes for an identical config.

    A config whose training or serving does not fit the hardware is refused first (config/plan.py), so
    neither `cdk synth` nor a local run starts from one; plan.enforce=false turns that into a warning.
    An identical config with identical code is answered from the definition cache
    (pipelines/definition/cache.py) without importing the SDK."""
    from config.plan import enforce_plan
    from pipelines.definition.cache import cached_definition

    enforce_plan(cfg)
    text = cached_definition(cfg, _build_definition)
    check_definition(json.loads(text))  # a cached entry too: the rules may be stricter than when it was built
    return text


def _build_definition(cfg: ProjectConfig) -> str:
    import logging
    import warnings

    # Expected SDK chatter, once per step: job names dropped from the definition, role validation
    # skipped (on purpose: the role is a placeholder), CertifyForMarketplace popped, and "no job is
    # started" from the PipelineSession. Errors still show.
    for name in (
        "sagemaker.core.workflow.utilities",
        "sagemaker.core.utils.utils",
        "sagemaker.config",
        "sagemaker.core.helper.iam_role_resolver",
        "sagemaker.mlops.workflow.model_step",
    ):
        logging.getLogger(name).setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Running within a PipelineSession", category=UserWarning)
        definition = json.loads(build_pipeline(cfg).definition())
    # allow_nan=False: NaN is not JSON, and SageMaker would refuse the definition; the bounds keep it out.
    return json.dumps(definition, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
