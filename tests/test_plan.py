"""The Neuron memory and shape planner (config/plan.py), `mlops plan`, and the FLOPs it states."""

from __future__ import annotations

import dataclasses
import json

import pytest
from typer.testing import CliRunner

from config import load_config
from config.plan import (
    LORA_DROPOUT_BYTES,
    Architecture,
    Check,
    ServingShape,
    SidePlan,
    TrainingShape,
    _first_fit,
    enforce_plan,
    lora_dropout_inputs,
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
QWEN3_8B = DecoderShape(36, 4096, 32, 8, 12288, 151936, head_dim=128, qk_norm=True)
# SmolLM2-135M's config.json: 30 layers, hidden 576, 9 heads, 3 KV heads, intermediate 1536, vocab 49152, tied.
SMOLLM2 = DecoderShape(30, 576, 9, 3, 1536, 49152, tie_word_embeddings=True)


# Llama-3.2-1B's config.json (meta-llama/Llama-3.2-1B): 16 layers, hidden 2048, 32 heads, 8 KV heads, head_dim 64
# (set, as Qwen3 sets it, though Llama has no q_norm/k_norm), intermediate 8192, vocab 128256, tied.
LLAMA_1B = DecoderShape(16, 2048, 32, 8, 8192, 128256, head_dim=64, tie_word_embeddings=True)


@pytest.mark.parametrize(("shape", "published"), [(LLAMA_8B, 8.03e9), (QWEN3_8B, 8.2e9), (SMOLLM2, 134.5e6)])
def test_parameter_count_matches_the_model_cards(shape: DecoderShape, published: float) -> None:
    assert parameter_count(shape) == pytest.approx(published, rel=0.01)


@pytest.mark.parametrize(
    ("shape", "exact"),
    # The counts transformers' num_parameters() gives for the two checkpoints; only Qwen3 has q_norm/k_norm.
    [(LLAMA_1B, 1_235_814_400), (QWEN3_8B, 8_190_735_360)],
)
def test_parameter_count_adds_qk_norm_for_the_family_that_has_it_not_for_head_dim(shape, exact):
    assert parameter_count(shape) == exact


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

# optimum-neuron v0.4.5's Llama 3.1 8B LoRA tutorial (docs/source/training_tutorials/finetune_llama.mdx,
# https://huggingface.co/docs/optimum-neuron/training_tutorials/finetune_llama): trn1.32xlarge, TP_DEGREE=8,
# BS=1, GRADIENT_ACCUMULATION_STEPS=16, max_seq_length=2048 with packing, bf16, LoRA r=64 on embed_tokens and
# the seven projections with lora_dropout=0.05, flash attention; zero_1 and gradient checkpointing are not
# passed, so they keep NeuronTrainingArguments' defaults (optimum/neuron/trainers/training_args.py L325
# zero_1=True, L284-285 gradient_checkpointing=False).
TUTORIAL_8B_TRAINING = TrainingShape(
    instance_type="ml.trn1.32xlarge",
    instance_count=1,
    tensor_parallel_size=8,
    zero_1=True,
    micro_batch=1,
    gradient_accumulation_steps=16,
    max_seq_length=2048,
    gradient_checkpointing=False,
    lora_r=64,
    lora_target_modules=("embed_tokens", *ALL_LINEARS),
    lora_dropout=0.05,
    flash_attention=True,
)
# optimum-neuron v0.4.5's vLLM data-parallel benchmark of Llama-3.1-8B-Instruct on inf2.48xlarge:
# benchmark/vllm/data-parallel/llama3.1-8b/.env (MAX_BATCH_SIZE=32, MAX_TOTAL_TOKENS=4096) and
# docker-compose-dp3.yaml (three replicas, each SM_ON_TENSOR_PARALLEL_SIZE=8 on four of the twelve devices);
# docs/source/benchmarks/inferentia-llama3.1-8b.mdx: "all models are compiled to use 4 devices corresponding
# to 8 cores on the `inf2.48xlarge` instance".
BENCHMARK_8B_SERVING = ServingShape(
    instance_type="ml.inf2.48xlarge",
    supported_instance_types=("ml.inf2.48xlarge",),
    tensor_parallel_size=8,
    batch_size=32,
    sequence_length=4096,
    dtype="bfloat16",
    compile_instance_type="ml.m5.4xlarge",
)
# optimum-neuron v0.4.5's benchmark of Llama-3.3-70B on inf2.48xlarge
# (docs/source/benchmarks/inferentia-llama3.3-70b.mdx L23-29: batch_size 1, 4 and 8 at sequence_length 4096,
# "compiled to use 12 devices corresponding to 24 cores on the `inf2.48xlarge` instance"), in bf16.
BENCHMARK_70B_SERVING = ServingShape(
    instance_type="ml.inf2.48xlarge",
    supported_instance_types=("ml.inf2.48xlarge",),
    tensor_parallel_size=24,
    batch_size=8,
    sequence_length=4096,
    dtype="bfloat16",
    compile_instance_type="ml.m5.24xlarge",
)


QWEN3_8B_ARCH = Architecture(QWEN3_8B, 40960)  # Qwen3-8B's config.json: max_position_embeddings 40960
# optimum-neuron v0.4.5's Qwen3-8B LoRA example (docs/source/training_tutorials/finetune_qwen3.mdx;
# examples/training/qwen3/finetune_qwen3.sh L10-42: PROCESSES_PER_NODE=32, TP_DEGREE=8, BS=1,
# GRADIENT_ACCUMULATION_STEPS=8, --bf16, --zero_1; finetune_qwen3.py L71-88: flash_attention_2, LoRA r=64 with
# lora_dropout=0.05 on embed_tokens and the seven projections, max_length=4096 with packing; gradient
# checkpointing not passed, so off).
QWEN3_8B_TRAINING = dataclasses.replace(
    TUTORIAL_8B_TRAINING, gradient_accumulation_steps=8, max_seq_length=4096, zero_1=True
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
    # inf2.24xlarge's 12 cores take TP 8 at most (12 is not an Inf2 degree), too few for 140 GB of weights;
    # inf2.48xlarge at TP 24 is the published setting. TP 16 (which fits by memory) is no Inf2 degree.
    assert (
        plan.fix
        == "--set infra.endpoint.instance_type=ml.inf2.48xlarge --set serving.tensor_parallel_size=24"
    )


def test_serving_fixes_propose_only_the_tp_degrees_the_runtime_supports():
    # A 70B at TP 8 on inf2.48xlarge needs more cores; the nearest TP that fits by memory is 13, which the
    # Neuron runtime does not serve on Inf2 (1, 2, 4, 8, 24): the fix is 24.
    shape = dataclasses.replace(BENCHMARK_70B_SERVING, tensor_parallel_size=8, batch_size=4)
    plan = make_plan(LLAMA_70B_ARCH, TUTORIAL_8B_TRAINING, shape).serving
    assert [c.name for c in plan.failures] == ["serving_memory"]
    assert plan.fix == "--set serving.tensor_parallel_size=24"


@pytest.mark.parametrize(
    ("instance_type", "tp", "nearest"),
    # 12 fits inf2.24xlarge's cores but is no Inf2 degree: the nearest it holds is 8. From 16, 8 and 24 are
    # as near, and the higher wins (more memory a core).
    [("ml.inf2.24xlarge", 12, 8), ("ml.inf2.48xlarge", 16, 24)],
)
def test_serving_tp_outside_the_runtime_degrees_is_refused(instance_type, tp, nearest):
    shape = dataclasses.replace(
        BENCHMARK_8B_SERVING,
        instance_type=instance_type,
        supported_instance_types=(instance_type,),
        tensor_parallel_size=tp,
    )
    plan = make_plan(LLAMA_8B_ARCH, TUTORIAL_8B_TRAINING, shape).serving
    failed = {c.name: c.reason for c in plan.failures}
    assert failed == {
        "tp_supported": f"serving.tensor_parallel_size={tp}: the Neuron runtime serves inf2 at TP 1, 2, 4, 8, 24 "
        "(NxD Inference feature guide); pick one of them"
    }
    assert plan.fix == f"--set serving.tensor_parallel_size={nearest}"


def test_the_tp_degree_tables():
    from config.hardware import neuron_instance, serving_tp_degrees, training_tp_degrees

    def degrees(name, table):
        inst = neuron_instance(name)
        assert inst is not None
        return table(inst)

    assert degrees("ml.inf2.24xlarge", serving_tp_degrees) == (1, 2, 4, 8)
    assert degrees("ml.inf2.48xlarge", serving_tp_degrees) == (1, 2, 4, 8, 24)
    assert degrees("ml.trn1.32xlarge", serving_tp_degrees) == (1, 2, 8, 16, 32)
    assert degrees("ml.trn2.48xlarge", serving_tp_degrees) == (1, 2, 4, 8, 16, 32, 64)
    # Training is bound only by the cores (no published list narrows it): TP 4 on trn1 is allowed.
    assert degrees("ml.trn1.32xlarge", training_tp_degrees) == (1, 2, 4, 8, 16, 32)


def test_the_published_8b_serving_config_passes_with_the_default_instance_types_narrowed():
    # The default serving.instance_types lists inf2.xlarge and inf2.8xlarge (2 cores each), which cannot hold
    # the benchmark's TP 8. The free fix is to drop them, not TP=2 at 97% of a core.
    defaults = tuple(load_config().serving.instance_types)
    assert "ml.inf2.xlarge" in defaults
    shape = dataclasses.replace(BENCHMARK_8B_SERVING, supported_instance_types=defaults)
    plan = make_plan(LLAMA_8B_ARCH, TUTORIAL_8B_TRAINING, shape).serving
    assert [c.name for c in plan.failures] == ["supported_types_hold_tp"]
    assert plan.fix == "--set 'serving.instance_types=[ml.inf2.24xlarge,ml.inf2.48xlarge]'"


LLAMA_8B_CONFIG = [
    *("--set", "model.architecture.num_hidden_layers=32", "--set", "model.architecture.hidden_size=4096"),
    *(
        "--set",
        "model.architecture.num_attention_heads=32",
        "--set",
        "model.architecture.num_key_value_heads=8",
    ),
    *("--set", "model.architecture.intermediate_size=14336", "--set", "model.architecture.vocab_size=128256"),
    *("--set", "model.architecture.max_position_embeddings=131072"),
    *("--set", "model.architecture.tie_word_embeddings=false"),
    *("--set", "pipeline.instances.train=ml.trn1.32xlarge", "--set", "training.tensor_parallel_size=8"),
    *(
        "--set",
        "pipeline.instances.compile=ml.m5.4xlarge",
        "--set",
        "pipeline.instances.evaluate=ml.m5.4xlarge",
    ),
    *("--set", "infra.endpoint.instance_type=ml.inf2.48xlarge", "--set", "serving.tensor_parallel_size=8"),
    *("--set", "serving.batch_size=32", "--set", "serving.sequence_length=4096"),
]


def test_config_validate_names_the_instance_types_as_the_fix_for_the_published_8b_config():
    result = mlops("config", "validate", *LLAMA_8B_CONFIG)
    assert result.exit_code == 2, result.output
    assert "training:" not in result.output, result.output
    assert (
        "serving: supported_types_hold_tp: serving.instance_types: ml.inf2.xlarge (2), ml.inf2.8xlarge (2) have "
        "fewer NeuronCores than TP=8" in result.output
    )
    fix = "--set 'serving.instance_types=[ml.inf2.24xlarge,ml.inf2.48xlarge]'"
    assert f"serving: smallest change that fits: {fix}" in result.output
    narrowed = mlops(
        "config",
        "validate",
        *LLAMA_8B_CONFIG,
        "--set",
        "serving.instance_types=[ml.inf2.24xlarge,ml.inf2.48xlarge]",
    )
    assert narrowed.exit_code == 0, narrowed.output


def _side(name: str, gib: float) -> SidePlan:
    return SidePlan("ml.inf2.48xlarge", 24, gib, 16.0, {}, [Check(name, True, "")])


def test_a_fix_near_the_limit_loses_to_a_later_comfortable_one():
    tight, roomy = (("serving.tensor_parallel_size", 2),), (("serving.batch_size", 8),)
    plans = {tight: _side("tight", 15.5), roomy: _side("roomy", 8.0)}
    assert _first_fit([tight, roomy], plans.__getitem__) == roomy
    # Only when nothing comfortable fits does the tight one stand.
    plans[roomy] = _side("roomy", 15.9)
    assert _first_fit([tight, roomy], plans.__getitem__) == tight


# optimum-neuron v0.4.5's vLLM benchmark of Llama-3.1-8B-Instruct on trn2.48xlarge:
# benchmark/vllm/single-instance/llama-3.1-8b-trn2/.env (BATCH_SIZE=32, SEQUENCE_LENGTH=4096,
# TENSOR_PARALLEL_SIZE=4), served by `optimum-cli neuron serve` (serve.sh); 4 logical cores at LNC=2.
BENCHMARK_8B_TRN2_SERVING = dataclasses.replace(
    BENCHMARK_8B_SERVING,
    instance_type="ml.trn2.48xlarge",
    supported_instance_types=("ml.trn2.48xlarge",),
    tensor_parallel_size=4,
)


def test_the_published_trn2_serving_config_fits_with_upstreams_caveat_as_a_warning():
    plan = plan_serving(LLAMA_8B_ARCH, BENCHMARK_8B_TRN2_SERVING)
    assert plan.fits and plan.cores == 64 and plan.limit_gib_per_core == 24.0
    checks = {c.name: c for c in plan.checks}
    assert checks["serving_family"].ok is True
    assert (
        checks["serving_family"].reason
        == "infra.endpoint.instance_type=ml.trn2.48xlarge is an endpoint type of trn2"
    )
    caveat = checks["trn2_serving_upstream"]
    assert caveat.ok is None  # said, never a refusal
    assert "docs/source/guides/vllm_plugin.mdx L22" in caveat.reason
    assert "benchmark/vllm/single-instance/llama-3.1-8b-trn2/.env" in caveat.reason
    assert checks["tp_supported"].ok is True
    # Weights / 4 (about 3.7 GiB) plus the KV cache at batch 32 x 4096 (2 KV heads a rank): about 8 GiB.
    assert 7 < plan.gib_per_core < 9


def test_a_trn2_endpoint_at_a_tp_the_runtime_does_not_list_is_fixed_on_trn2():
    """NxD Inference feature guide: "Trn2: 1, 2, 4, 8, 16, 32, and 64 (with LNC2)"; 12 is not among them."""
    shape = dataclasses.replace(BENCHMARK_8B_TRN2_SERVING, tensor_parallel_size=12)
    plan = make_plan(LLAMA_8B_ARCH, TUTORIAL_8B_TRAINING, shape).serving
    assert [c.name for c in plan.failures] == ["tp_supported"]
    assert plan.fix == "--set serving.tensor_parallel_size=16"


def test_a_trn1_endpoint_is_refused_and_the_fix_is_an_inf2_type():
    shape = dataclasses.replace(BENCHMARK_8B_SERVING, instance_type="ml.trn1.32xlarge")
    plan = make_plan(LLAMA_8B_ARCH, TUTORIAL_8B_TRAINING, shape).serving
    failed = {c.name: c.reason for c in plan.failures}
    assert list(failed) == ["serving_family"]
    assert failed["serving_family"].startswith(
        "infra.endpoint.instance_type=ml.trn1.32xlarge: the project serves on ml.inf2 and ml.trn2 only"
    )
    assert failed["serving_family"].endswith("pick an ml.inf2 type or ml.trn2.48xlarge")
    assert plan.fix == "--set infra.endpoint.instance_type=ml.inf2.24xlarge"


def test_an_unknown_endpoint_type_names_the_inf2_and_trn2_types():
    shape = dataclasses.replace(BENCHMARK_8B_SERVING, instance_type="ml.g5.xlarge")
    (check,) = plan_serving(LLAMA_8B_ARCH, shape).failures
    assert check.reason.startswith(
        "infra.endpoint.instance_type=ml.g5.xlarge: the planner has no published figures for it (it knows "
        "ml.inf2.xlarge, ml.inf2.8xlarge, ml.inf2.24xlarge, ml.inf2.48xlarge, ml.trn2.48xlarge); pick one of those"
    )
    assert "the project serves on ml.inf2 and ml.trn2 only" in check.reason


# ---- the evaluate step's host RAM -------------------------------------------------------------------


def test_an_8b_does_not_fit_the_default_evaluate_host_and_the_fix_is_the_next_m5():
    """CPU generation in fp32 plus the fp16 copy for few-row matmuls: 8.03e9 x 4 bytes = 29.9 GiB, x 1.75 =
    52.4 GiB, over m5.2xlarge's 32 GiB (EC2 general purpose table); m5.4xlarge has 64."""
    shape = dataclasses.replace(TUTORIAL_8B_TRAINING, evaluate_instance_type="ml.m5.2xlarge")
    plan = make_plan(LLAMA_8B_ARCH, shape, BENCHMARK_8B_SERVING).training
    assert [c.name for c in plan.failures] == ["evaluate_host_ram"]
    (check,) = plan.failures
    assert check.reason == (
        "pipeline.instances.evaluate=ml.m5.2xlarge has 32 GiB; CPU generation holds about 52.4 GiB (1.75 x the "
        "fp32 weights, an estimate: a CPU without fast bf16 evaluates in fp32): does not fit; pick ml.m5.4xlarge "
        "or larger"
    )
    assert plan.fix == "--set pipeline.instances.evaluate=ml.m5.4xlarge"
    roomy = dataclasses.replace(shape, evaluate_instance_type="ml.m5.4xlarge")
    assert plan_training(LLAMA_8B_ARCH, roomy).fits


def test_a_failing_evaluate_host_goes_with_the_training_fix():
    shape = dataclasses.replace(
        TUTORIAL_8B_TRAINING, evaluate_instance_type="ml.m5.2xlarge", tensor_parallel_size=1
    )
    plan = make_plan(LLAMA_8B_ARCH, shape, BENCHMARK_8B_SERVING).training
    assert {c.name for c in plan.failures} == {"evaluate_host_ram", "training_memory"}
    assert plan.fix is not None and plan.fix.endswith("--set pipeline.instances.evaluate=ml.m5.4xlarge")
    assert plan.fix.startswith("--set training.")


def test_a_1b_fits_the_default_evaluate_host_and_an_unknown_host_is_not_checked():
    shape = dataclasses.replace(TUTORIAL_8B_TRAINING, evaluate_instance_type="ml.m5.2xlarge")
    check = next(
        c
        for c in plan_training(Architecture(LLAMA_1B, 131072), shape).checks
        if c.name == "evaluate_host_ram"
    )
    assert check.ok is True and "holds about 8.1 GiB" in check.reason
    other = dataclasses.replace(shape, evaluate_instance_type="ml.c5.4xlarge")
    check = next(c for c in plan_training(LLAMA_8B_ARCH, other).checks if c.name == "evaluate_host_ram")
    assert check.ok is None and check.reason.endswith("its RAM is not in the planner's table; not checked")


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


def test_an_8b_on_inf2_xlarge_warns_that_its_host_ram_may_not_load_the_weights():
    shape = dataclasses.replace(
        BENCHMARK_8B_SERVING,
        instance_type="ml.inf2.xlarge",
        supported_instance_types=("ml.inf2.xlarge",),
        tensor_parallel_size=2,
        batch_size=1,
    )
    check = next(c for c in plan_serving(LLAMA_8B_ARCH, shape).checks if c.name == "endpoint_host_ram")
    assert check.ok is None  # a warning, not a refusal: no published figure
    assert check.reason.startswith(
        "infra.endpoint.instance_type=ml.inf2.xlarge has 16 GiB of host RAM for 15.0 GiB of bfloat16 weights"
    )
    roomy = next(
        c for c in plan_serving(LLAMA_8B_ARCH, BENCHMARK_8B_SERVING).checks if c.name == "endpoint_host_ram"
    )
    assert roomy.ok is True and "768 GiB of host RAM" in roomy.reason


def test_trn2_cores_follow_the_logical_core_setting_and_lnc1_is_refused():
    shape = dataclasses.replace(TUTORIAL_8B_TRAINING, instance_type="ml.trn2.48xlarge")
    default = plan_training(LLAMA_8B_ARCH, shape)  # LNC=2: 64 logical cores of 24 GiB
    assert (default.cores, default.limit_gib_per_core) == (64, 24)
    assert default.fits, default.failures
    lnc1 = plan_training(LLAMA_8B_ARCH, dataclasses.replace(shape, logical_core_size=1))
    assert (lnc1.cores, lnc1.limit_gib_per_core) == (128, 12)
    # optimum-neuron 0.4.5 does not support LNC=1 (utils/system.py): modelled, then refused.
    assert {c.name: c.reason for c in lnc1.failures} == {
        "logical_cores": "LNC=1 on ml.trn2.48xlarge: optimum-neuron 0.4.5 supports LNC=2 only (utils/system.py); "
        "leave NEURON_LOGICAL_NC_CONFIG unset or set it to 2"
    }


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


def test_the_optimum_neuron_qwen3_8b_lora_example_fits_trn1_32xlarge():
    plan = plan_training(QWEN3_8B_ARCH, QWEN3_8B_TRAINING)
    assert plan.fits, plan.failures
    assert plan.data_parallel == 4 and "AdamW moments (fp32, ZeRO-1 over 4)" in plan.breakdown
    # Below the near-limit line: counting each LoRA dropout's whole input, not 1/TP, took it to 15.05 of 16.
    assert plan.gib_per_core < 0.9 * plan.limit_gib_per_core


def test_lora_dropout_inputs_are_a_rank_share_and_fused_layers_share_one():
    h, i = 4096, 14336
    # TP 8 divides Llama-8B's 8 KV heads: q, k and v are three layers, each dropping out its own x; gate and up
    # are one gate_up_proj. Every input is 1/TP a rank (sequence parallelism splits x over the sequence).
    assert lora_dropout_inputs(LLAMA_8B, ALL_LINEARS, 8) == (3 * h + h + h + i) / 8
    # TP 16 does not divide 8 KV heads: q, k and v are one qkv_proj (qkv_linear), one dropout.
    assert lora_dropout_inputs(LLAMA_8B, ALL_LINEARS, 16) == (h + h + h + i) / 16
    assert lora_dropout_inputs(LLAMA_8B, ["gate_proj", "up_proj"], 1) == h
    assert lora_dropout_inputs(LLAMA_8B, ["embed_tokens"], 8) == 0


def test_lora_dropout_no_longer_refuses_a_long_sequence_at_tp8():
    # Llama-8B at 8192 tokens, TP 8, flash attention, no checkpointing: counting each dropout's whole input
    # gave 25.1 GiB a core (refused) against 8.4 GiB with no dropout.
    shape = dataclasses.replace(TUTORIAL_8B_TRAINING, max_seq_length=8192)
    with_dropout = plan_training(LLAMA_8B_ARCH, shape)
    without = plan_training(LLAMA_8B_ARCH, dataclasses.replace(shape, lora_dropout=0.0))
    assert without.gib_per_core == pytest.approx(8.4, abs=0.05)
    assert with_dropout.fits, with_dropout.failures
    # fp32 copy + 1-byte mask, a rank's share of the inputs, a token and a layer.
    extra = LORA_DROPOUT_BYTES * lora_dropout_inputs(LLAMA_8B, ALL_LINEARS, 8) * 8192 * 32 / 2**30
    assert with_dropout.gib_per_core - without.gib_per_core == pytest.approx(extra)


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
