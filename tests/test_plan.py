"""The Neuron memory and shape planner (config/plan.py), `mlops plan`, and the FLOPs it states."""

from __future__ import annotations

import dataclasses
import json

import pytest
from typer.testing import CliRunner

from config import load_config
from config.plan import (
    Architecture,
    ServingShape,
    TrainingShape,
    enforce_plan,
    make_plan,
    plan_serving,
    plan_training,
    serving_head_counts,
)
from training.errors import UserError
from training.flops import DecoderShape, flops_per_token, lora_parameters, matmul_parameters, parameter_count

ALL_LINEARS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# Llama-3.1-8B's config.json (meta-llama/Llama-3.1-8B): 32 layers, hidden 4096, 32 heads, 8 KV heads,
# intermediate 14336, vocab 128256, untied head; Meta's model card calls it 8.03B parameters.
LLAMA_8B = DecoderShape(32, 4096, 32, 8, 14336, 128256)
# Qwen3-8B's config.json (Qwen/Qwen3-8B): 36 layers, hidden 4096, 32 heads, 8 KV heads, head_dim 128,
# intermediate 12288, vocab 151936, untied; the model card says 8.2B parameters.
QWEN3_8B = DecoderShape(36, 4096, 32, 8, 12288, 151936, head_dim=128)
# SmolLM2-135M's config.json: 30 layers, hidden 576, 9 heads, 3 KV heads, intermediate 1536, vocab 49152, tied.
SMOLLM2 = DecoderShape(30, 576, 9, 3, 1536, 49152, tie_word_embeddings=True)


@pytest.mark.parametrize(("shape", "published"), [(LLAMA_8B, 8.03e9), (QWEN3_8B, 8.2e9), (SMOLLM2, 134.5e6)])
def test_parameter_count_matches_the_model_cards(shape: DecoderShape, published: float) -> None:
    assert parameter_count(shape) == pytest.approx(published, rel=0.01)


def test_lora_parameters_of_llama_8b_rank_16_on_every_linear() -> None:
    # The figure peft prints for Llama-3-8B with r=16 on all seven projections: 41,943,040.
    assert lora_parameters(LLAMA_8B, 16, ALL_LINEARS) == 41_943_040


def test_flops_follow_palm_appendix_b() -> None:
    n, t = matmul_parameters(LLAMA_8B), 2048
    attention = 4 * 32 * 32 * 128 * t
    f = flops_per_token(LLAMA_8B, t, 16, ALL_LINEARS, gradient_checkpointing=False)
    n_lora = lora_parameters(LLAMA_8B, 16, ALL_LINEARS)
    assert f.full_training == 6 * n + 3 * attention
    assert f.lora_training == 4 * n + 6 * n_lora + 3 * attention
    assert f.model_flops == f.lora_training == f.hardware_per_token
    recomputed = flops_per_token(LLAMA_8B, t, 16, ALL_LINEARS, gradient_checkpointing=True)
    assert recomputed.hardware_per_token == f.lora_training + f.forward
    assert recomputed.model_flops == f.model_flops


# ---- the planner against published working configurations ----------------------------------------


LLAMA_8B_ARCH = Architecture(LLAMA_8B, 131072)
# Llama-3.3-70B's config.json (meta-llama/Llama-3.3-70B-Instruct; DeepSeek-R1-Distill-Llama-70B has the same
# shape): 80 layers, hidden 8192, 64 heads, 8 KV heads, intermediate 28672, vocab 128256, untied, 131072 positions.
LLAMA_70B_ARCH = Architecture(DecoderShape(80, 8192, 64, 8, 28672, 128256), 131072)

# optimum-neuron's Llama 3.1 8B LoRA tutorial (docs/source/training_tutorials/finetune_llama.mdx,
# https://huggingface.co/docs/optimum-neuron/training_tutorials/finetune_llama): trn1.32xlarge, TP_DEGREE=8,
# BS=1, GRADIENT_ACCUMULATION_STEPS=16, max_seq_length=2048 with packing, bf16, LoRA r=64 on embed_tokens and
# the seven projections with lora_dropout=0.05, flash attention; zero_1 and gradient checkpointing left at
# their defaults (off).
TUTORIAL_8B_TRAINING = TrainingShape(
    instance_type="ml.trn1.32xlarge",
    instance_count=1,
    tensor_parallel_size=8,
    zero_1=False,
    micro_batch=1,
    gradient_accumulation_steps=16,
    max_seq_length=2048,
    gradient_checkpointing=False,
    lora_r=64,
    lora_target_modules=("embed_tokens", *ALL_LINEARS),
    lora_dropout=0.05,
    flash_attention=True,
)
# optimum-neuron's vLLM benchmark of Llama-3.1-8B-Instruct on inf2.48xlarge
# (benchmark/vllm/llama-3.1-8b/serve-dp1-tp8.env: BATCH_SIZE=32, SEQUENCE_LENGTH=4096, TENSOR_PARALLEL_SIZE=8;
# benchmark/vllm/llama-3.1-8b-inf2-report.md: "inf2.48xlarge, TP=8 / BS=32").
BENCHMARK_8B_SERVING = ServingShape(
    instance_type="ml.inf2.48xlarge",
    supported_instance_types=("ml.inf2.48xlarge",),
    tensor_parallel_size=8,
    batch_size=32,
    sequence_length=4096,
    dtype="bfloat16",
    compile_instance_type="ml.m5.4xlarge",
)
# optimum-neuron's TGI benchmark of a Llama-3 70B on inf2.48xlarge
# (benchmark/text-generation-inference/performance/llama3-70b-inf2.48xlarge: HF_NUM_CORES=24,
# MAX_BATCH_SIZE=8, MAX_TOTAL_TOKENS=4096, HF_AUTO_CAST_TYPE=bf16, DeepSeek-R1-Distill-Llama-70B).
BENCHMARK_70B_SERVING = ServingShape(
    instance_type="ml.inf2.48xlarge",
    supported_instance_types=("ml.inf2.48xlarge",),
    tensor_parallel_size=24,
    batch_size=8,
    sequence_length=4096,
    dtype="bfloat16",
    compile_instance_type="ml.m5.24xlarge",
)


def test_the_optimum_neuron_8b_lora_tutorial_fits_trn1_32xlarge():
    plan = plan_training(LLAMA_8B_ARCH, TUTORIAL_8B_TRAINING)
    assert plan.fits, plan.failures
    assert plan.data_parallel == 4 and plan.cores == 32 and plan.limit_gib_per_core == 16
    # Without flash attention (our backend's eager attention) it still fits: 2048² scores are sharded by TP.
    assert plan_training(LLAMA_8B_ARCH, dataclasses.replace(TUTORIAL_8B_TRAINING, flash_attention=False)).fits


def test_the_vllm_benchmark_8b_fits_inf2_48xlarge_at_tp8_batch_32():
    plan = plan_serving(LLAMA_8B_ARCH, BENCHMARK_8B_SERVING)
    assert plan.fits, plan.failures
    # 16 GB of bf16 weights over 8 cores, and 32 x 4096 tokens of KV cache with one KV head per core.
    assert plan.breakdown["weights (bfloat16)"] == pytest.approx(1.87, abs=0.02)
    assert plan.breakdown["KV cache"] == pytest.approx(2.0, abs=0.01)


def test_a_70b_fits_inf2_48xlarge_at_tp24_though_tp_does_not_divide_its_64_heads():
    # The publication wins over the rule "TP divides the attention heads": optimum-neuron's inference backend
    # pads 64 heads to 72 and replicates the 8 KV heads to 24 (gqa.py, get_shardable_head_counts), so serving
    # pads instead of refusing; only training (which splits heads evenly) keeps the rule.
    assert serving_head_counts(LLAMA_70B_ARCH.shape, 24) == (72, 24)
    plan = plan_serving(LLAMA_70B_ARCH, BENCHMARK_70B_SERVING)
    assert plan.fits, plan.failures
    assert "64 attention heads padded to 72, 8 KV heads to 24" in next(
        c.reason for c in plan.checks if c.name == "head_padding"
    )


@pytest.mark.parametrize(
    ("checkpointing", "fix"),
    [
        # The tutorial's shape: 15 GiB of frozen weights plus 16 GiB of activations; neither checkpointing nor
        # TP=2 on two cores is enough, so the bigger instance with the TP that spreads the model over it.
        (False, "--set pipeline.instances.train=ml.trn1.32xlarge --set training.tensor_parallel_size=4"),
        # Checkpointed, the weights and logits alone pass 16 GiB; halving them over the two cores fits.
        (True, "--set training.tensor_parallel_size=2"),
    ],
)
def test_8b_training_at_tp1_on_trn1_2xlarge_does_not_fit(checkpointing, fix):
    shape = dataclasses.replace(
        TUTORIAL_8B_TRAINING,
        instance_type="ml.trn1.2xlarge",
        tensor_parallel_size=1,
        gradient_checkpointing=checkpointing,
    )
    plan = make_plan(LLAMA_8B_ARCH, shape, BENCHMARK_8B_SERVING).training
    assert not plan.fits
    assert [c.name for c in plan.failures] == ["training_memory"]
    assert plan.gib_per_core > 16
    assert plan.breakdown["weights (bf16, frozen)"] == pytest.approx(14.96, abs=0.01)
    assert plan.fix == fix


def test_a_70b_served_on_inf2_xlarge_does_not_fit_and_the_fix_is_a_bigger_instance_with_more_tp():
    shape = dataclasses.replace(BENCHMARK_70B_SERVING, instance_type="ml.inf2.xlarge", tensor_parallel_size=2)
    plan = make_plan(LLAMA_70B_ARCH, TUTORIAL_8B_TRAINING, shape).serving
    assert not plan.fits
    assert [c.name for c in plan.failures] == ["serving_memory"]
    assert plan.gib_per_core > 60
    # Not inf2.24xlarge at TP=12: 12 is no multiple of 8 KV heads, so they become 72 (one per padded head)
    # and the KV cache alone takes 8 GiB a core. TP=16 keeps one KV head a core.
    assert (
        plan.fix
        == "--set infra.endpoint.instance_type=ml.inf2.48xlarge --set serving.tensor_parallel_size=16"
    )


def test_serving_tp_beyond_the_instance_cores_is_refused():
    shape = dataclasses.replace(BENCHMARK_8B_SERVING, instance_type="ml.inf2.8xlarge", tensor_parallel_size=8)
    plan = make_plan(LLAMA_8B_ARCH, TUTORIAL_8B_TRAINING, shape).serving
    failed = {c.name: c.reason for c in plan.failures}
    assert "TP cannot exceed them" in failed["tp_within_cores"]
    assert "ml.inf2.8xlarge" in failed["tp_within_cores"]


def test_supported_instance_types_must_hold_the_compiled_tp():
    shape = dataclasses.replace(
        BENCHMARK_8B_SERVING, supported_instance_types=("ml.inf2.xlarge", "ml.inf2.48xlarge")
    )
    failed = {c.name: c.reason for c in plan_serving(LLAMA_8B_ARCH, shape).failures}
    assert failed == {
        "supported_types_hold_tp": "serving.instance_types: ml.inf2.xlarge (2) have fewer NeuronCores than TP=8"
    }


def test_the_compile_host_must_hold_the_model():
    shape = dataclasses.replace(BENCHMARK_70B_SERVING, compile_instance_type="ml.m5.4xlarge")
    plan = make_plan(LLAMA_70B_ARCH, TUTORIAL_8B_TRAINING, shape).serving
    assert [c.name for c in plan.failures] == ["compile_host_ram"]
    assert plan.fix == "--set pipeline.instances.compile=ml.m5.24xlarge"
    unknown = dataclasses.replace(BENCHMARK_8B_SERVING, compile_instance_type="ml.c5.9xlarge")
    check = next(c for c in plan_serving(LLAMA_8B_ARCH, unknown).checks if c.name == "compile_host_ram")
    assert check.ok is None and "not in the planner's table; not checked" in check.reason


def test_trn2_cores_follow_the_logical_core_setting():
    shape = dataclasses.replace(TUTORIAL_8B_TRAINING, instance_type="ml.trn2.48xlarge")
    default = plan_training(LLAMA_8B_ARCH, shape)  # LNC=2: 64 logical cores of 24 GiB
    assert (default.cores, default.limit_gib_per_core) == (64, 24)
    lnc1 = plan_training(LLAMA_8B_ARCH, dataclasses.replace(shape, logical_core_size=1))
    assert (lnc1.cores, lnc1.limit_gib_per_core) == (128, 12)


def test_training_shape_rules_name_the_key_and_the_fix():
    shape = dataclasses.replace(TUTORIAL_8B_TRAINING, tensor_parallel_size=6)
    plan = make_plan(LLAMA_8B_ARCH, shape, BENCHMARK_8B_SERVING).training
    failed = {c.name: c.reason for c in plan.failures}
    assert failed["tp_divides_heads"] == "32 attention heads over TP=6: TP must divide them"
    assert "neither divides the other" in failed["tp_and_kv_heads"]
    assert "TP must divide the cores of one instance" in failed["tp_within_cores"]
    assert plan.fix == "--set training.tensor_parallel_size=8"


def test_gradient_checkpointing_is_the_first_fix_for_activations():
    shape = dataclasses.replace(TUTORIAL_8B_TRAINING, micro_batch=4, max_seq_length=8192)
    plan = make_plan(LLAMA_8B_ARCH, shape, BENCHMARK_8B_SERVING).training
    assert not plan.fits
    assert plan.activations_gib["with_checkpointing"] < plan.activations_gib["without_checkpointing"] / 10
    assert plan.fix == "--set training.gradient_checkpointing=true"


def test_tokens_per_second_ceiling_is_peak_over_executed_flops():
    plan = plan_training(LLAMA_8B_ARCH, TUTORIAL_8B_TRAINING)
    assert plan.flops is not None
    # trn1.32xlarge: 16 Trainium devices x 190 bf16 TFLOPS (trn1-arch.rst: 3,040 TFLOPS for the instance).
    assert plan.tokens_per_second_ceiling == pytest.approx(3040e12 / plan.flops.hardware_per_token)


# ---- the project config, `mlops plan`, and enforcement -------------------------------------------

runner = CliRunner()
TP2_TRAINING = ["--set", "training.tensor_parallel_size=2"]  # SmolLM2's 9 heads do not split over 2


def mlops(*args: str):
    from pipelines.cli.app import app

    return runner.invoke(app, list(args), env={"COLUMNS": "300"})


def test_the_default_config_fits():
    plan = enforce_plan(load_config())
    assert plan.fits and plan.training.fix is None and plan.serving.fix is None


def test_mlops_plan_prints_a_table_of_both_sides():
    result = mlops("plan")
    assert result.exit_code == 0, result.output
    assert "training: fits" in result.output and "serving: fits" in result.output
    assert "training_memory" in result.output and "KV cache" in result.output
    assert "tokens/s ceiling" in result.output


def test_mlops_plan_json_has_each_verdict_and_reason():
    result = mlops("plan", "--json", *TP2_TRAINING)
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["fits"] is False and data["training"]["fits"] is False and data["serving"]["fits"] is True
    checks = {c["name"]: c for c in data["training"]["checks"]}
    assert checks["tp_divides_heads"]["verdict"] == "fail"
    assert checks["tp_divides_heads"]["reason"] == "9 attention heads over TP=2: TP must divide them"
    assert data["training"]["fix"] == "--set training.tensor_parallel_size=1"
    assert data["training"]["gib_per_core"] > 0 and data["training"]["limit_gib_per_core"] == 16
    assert data["training"]["flops_per_token"]["model_flops_for_mfu"] > 0


def test_config_validate_refuses_a_config_that_does_not_fit_with_the_reason_and_the_fix():
    result = mlops("config", "validate", *TP2_TRAINING)
    assert result.exit_code == 2
    assert "error: the config does not fit the hardware" in result.output
    assert "training: tp_divides_heads: 9 attention heads over TP=2: TP must divide them" in result.output
    assert "training: smallest change that fits: --set training.tensor_parallel_size=1" in result.output
    assert "or, to go ahead anyway: --set plan.enforce=false" in result.output


def test_plan_enforce_false_warns_and_goes_on(caplog):
    result = mlops("config", "validate", *TP2_TRAINING, "--set", "plan.enforce=false")
    assert result.exit_code == 0, result.output
    assert "configuration is valid (but does not fit: plan.enforce=false)" in result.output
    assert "plan.enforce=false: going ahead although the config does not fit" in caplog.text
    assert "tp_divides_heads" in caplog.text


def test_pipeline_definition_refuses_a_config_that_does_not_fit():
    from pipelines.definition.builder import pipeline_definition

    cfg = load_config(overrides=["serving.tensor_parallel_size=4"])  # the endpoint is an inf2.xlarge: 2 cores
    with pytest.raises(
        UserError, match=r"serving: tp_within_cores: serving.tensor_parallel_size=4, ml.inf2.xlarge"
    ):
        pipeline_definition(cfg)


def test_cdk_synth_refuses_a_config_that_does_not_fit(monkeypatch, tmp_path):
    import app

    override = tmp_path / "big.yaml"
    override.write_text("training:\n  max_seq_length: 16384\n")  # SmolLM2 has 8192 positions
    monkeypatch.setenv("MLOPS_CONFIG", str(override))
    with pytest.raises(SystemExit) as exit_:
        app.main()
    assert (
        "training: sequence_within_positions: training.max_seq_length=16384, the model has 8192 positions"
        in str(exit_.value)
    )
