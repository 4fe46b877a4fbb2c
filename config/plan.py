"""Will it fit? The Neuron memory and shape planner behind ``mlops plan``, ``config validate``,
``pipeline definition`` and ``cdk synth``: before anything is compiled or paid for.

The memory model, per NeuronCore (hardware figures and their sources: config/hardware.py):

**Training** (optimum-neuron 0.4.5 as training/backends/neuron_backend.py runs it: bf16, tensor
parallelism with sequence parallelism, which ``NeuronTrainingArguments.disable_sequence_parallel=False``
turns on whenever TP > 1; eager attention, since the backend does not ask for flash attention):

* frozen base weights in bf16, sharded over TP ranks: the q/o/MLP projections, the vocab-parallel
  embedding and LM head divide by TP; K and V divide by TP when TP divides the KV heads, and are otherwise
  replicated to one KV head per rank (optimum-neuron's ``auto_kv_size_multiplier``: TP // kv_heads);
* LoRA adapters in fp32 (peft's ``autocast_adapter_dtype`` casts bf16 adapters to fp32) with fp32
  gradients and AdamW's two fp32 moments: 16 bytes a parameter, of which the 8 optimizer bytes are
  sharded over data-parallel ranks with ZeRO-1;
* activations of a micro-batch (``per_device_train_batch_size × max_seq_length`` tokens): per token and
  layer, the tensors backward needs (RMSNorm inputs and outputs, Q, K and V expanded to all heads by
  ``repeat_kv``, the attention output, gate, up and SiLU(gate): ``8·h + 8·q + 6·I`` bytes) plus eager
  attention's fp32 softmax and its bf16 copy (``6·heads·seq`` bytes), all divided by TP (sequence
  parallelism shards what TP does not); with ``lora_dropout > 0`` each adapter also keeps its dropped-out
  input in fp32 and its mask (5 bytes an input feature, 1/TP of the input a rank; fused layers share one:
  ``lora_dropout_inputs``).
  Without gradient checkpointing every layer keeps them; with it, each layer keeps only its input
  (``2·h/TP`` bytes a token) and one layer at a time is recomputed (Korthikanti et al. 2022, "Reducing
  Activation Recomputation in Large Transformer Models", section 4, counts the same way for GPT);
* logits: vocab-parallel, bf16 plus the fp32 copy the loss takes and its gradient (10 bytes a token and
  vocabulary entry ÷ TP).

**Serving** (optimum-neuron 0.4.5's NxD inference backend, on inf2 or on trn2 at LNC=2, the only
logical-core setting its inference code compiles for: models/inference/backend/config.py L156-158):
weights ÷ TP in the serving dtype, with the
heads padded as ``get_shardable_head_counts`` pads them (optimum/neuron/models/inference/backend/modules/
attention/gqa.py: attention heads up to a multiple of TP; KV heads replicated to TP when TP is a multiple
of them, else converted to one per attention head), plus the KV cache
``2 × layers × kv_heads ÷ TP × head_dim × batch × sequence_length × bytes``.

What is not modelled, and why the verdict is an estimate, not a promise: the Neuron runtime's own HBM
(no published figure), compiler scratch space, and fragmentation. A plan near its limit says so.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from config.hardware import (
    CPU_HOST_GIB,
    GIB,
    SERVING_TP_DEGREES,
    NeuronInstance,
    host_gib,
    neuron_instance,
    neuron_types,
    serving_tp_degrees,
    training_tp_degrees,
)
from training.errors import UserError
from training.flops import DecoderShape, FlopsPerToken, decoder_shape, flops_per_token

if TYPE_CHECKING:
    from config.schema import ProjectConfig

log = logging.getLogger(__name__)

# Bytes a value: bf16/fp16 weights and activations, fp32 for adapters, their gradients and moments.
HALF, FLOAT = 2, 4
# The compile step loads the merged model on the host in the serving dtype and writes it again as TP
# shards (inference/compile.py, optimum-neuron's export): two copies at its peak. This factor is our
# estimate of that peak, not a published figure; the compiler's own memory comes on top.
COMPILE_HOST_FACTOR = 2.0
# The endpoint loads the compiled model through host memory before it reaches the NeuronCores; how much
# host RAM that takes is not published. Below this many times the weights the plan warns ("not checked",
# never a refusal): the same estimate as the compile step's, no published figure. It matters on
# inf2.xlarge: 16 GiB of host RAM (inf2-arch.rst) against 15 GiB of bf16 weights for an 8B.
ENDPOINT_HOST_FACTOR = 2.0
# Above this share of a core's HBM the plan warns: the runtime's own share is not modelled.
NEAR_LIMIT = 0.9
# The evaluate step generates on a CPU with the merged model, and with the base model after it (one at a
# time: inference/evaluate.py evaluate_one). It loads in fp32 wherever the CPU does not multiply bf16 faster
# than fp32, a choice made at run time by timing (inference/generation.py load_for_inference,
# training/cpu_precision.py), so the plan counts fp32, the larger. Where it loads fp32 from a bf16
# checkpoint, it also keeps an fp16 copy of the linear layers' weights for few-row matmuls
# (inference/packed_linear.py): 0.5 x the fp32 weights. This factor on the fp32 weights covers both, the
# bf16 shard being read while they are cast, and the Python/torch process: our estimate, not a published
# figure (as COMPILE_HOST_FACTOR).
EVALUATE_HOST_FACTOR = 1.75

COLUMN_PARALLEL = ("q_proj", "k_proj", "v_proj", "gate_proj", "up_proj")
ROW_PARALLEL = ("o_proj", "down_proj")


@dataclass(frozen=True)
class Architecture:
    """The model facts the planner needs: the shape, and how long a sequence its positions allow."""

    shape: DecoderShape
    max_position_embeddings: int


@dataclass(frozen=True)
class TrainingShape:
    instance_type: str
    instance_count: int
    tensor_parallel_size: int
    zero_1: bool
    micro_batch: int  # per_device_train_batch_size
    gradient_accumulation_steps: int
    max_seq_length: int
    gradient_checkpointing: bool
    lora_r: int
    lora_target_modules: tuple[str, ...]
    lora_dropout: float
    flash_attention: bool = False  # the optimum-neuron tutorials ask for it; our backend does not
    logical_core_size: int | None = None  # trn2's NEURON_LOGICAL_NC_CONFIG; None: its default (2)
    evaluate_instance_type: str | None = None  # pipeline.instances.evaluate; None: not checked


@dataclass(frozen=True)
class ServingShape:
    instance_type: str
    supported_instance_types: tuple[str, ...]
    tensor_parallel_size: int
    batch_size: int
    sequence_length: int
    dtype: str
    compile_instance_type: str


@dataclass(frozen=True)
class Check:
    """One verdict: ``ok`` is None when the planner had nothing to judge it by (said in ``reason``)."""

    name: str
    ok: bool | None
    reason: str


@dataclass(frozen=True)
class SidePlan:
    """Training or serving: the memory per core against the limit, every check, and a fix if it fails."""

    instance_type: str
    cores: int
    gib_per_core: float
    limit_gib_per_core: float
    breakdown: dict[str, float]  # GiB per core, by what holds it
    checks: list[Check]
    fix: str | None = None

    @property
    def fits(self) -> bool:
        return all(c.ok is not False for c in self.checks)

    @property
    def comfortable(self) -> bool:
        """Memory below the near-limit line, where the runtime's unmodelled share has room."""
        return self.gib_per_core <= NEAR_LIMIT * self.limit_gib_per_core

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.ok is False]


@dataclass(frozen=True)
class TrainingPlan(SidePlan):
    data_parallel: int = 1
    activations_gib: dict[str, float] = field(default_factory=dict)  # with and without checkpointing
    flops: FlopsPerToken | None = None
    tokens_per_second_ceiling: float | None = None


@dataclass(frozen=True)
class Plan:
    training: TrainingPlan
    serving: SidePlan

    @property
    def fits(self) -> bool:
        return self.training.fits and self.serving.fits


# --- shapes ---------------------------------------------------------------------------------------


def _gib(n_bytes: float) -> float:
    return n_bytes / GIB


def _unknown_instance(instance_type: str, key: str, family: str | tuple[str, ...], note: str = "") -> Check:
    families = (family,) if isinstance(family, str) else family
    known = ", ".join(i.instance_type for f in families for i in neuron_types(f))
    return Check(
        "instance",
        False,
        f"{key}={instance_type}: the planner has no published figures for it (it knows {known}); "
        "pick one of those, or set plan.enforce=false to go ahead unchecked" + (f" ({note})" if note else ""),
    )


def training_shape_checks(arch: Architecture, t: TrainingShape, inst: NeuronInstance) -> list[Check]:
    """The shapes optimum-neuron 0.4.5's training models accept (optimum/neuron/models/training/llama/
    modeling_llama.py: the MLP raises unless TP divides intermediate_size; attention heads are split
    evenly over TP ranks; KV heads are sharded when TP divides them, else replicated by TP // kv_heads,
    which needs TP to be a multiple of them)."""
    s, tp = arch.shape, t.tensor_parallel_size
    total = inst.cores * t.instance_count
    checks = [
        Check(
            "tp_within_cores",
            tp <= inst.cores and total % tp == 0,
            f"training.tensor_parallel_size={tp}, {inst.instance_type} has {inst.cores} NeuronCores"
            + (f" x {t.instance_count} instances" if t.instance_count > 1 else "")
            + ("" if tp <= inst.cores and total % tp == 0 else ": TP must divide the cores of one instance"),
        ),
        Check(
            "tp_divides_heads",
            s.num_attention_heads % tp == 0,
            f"{s.num_attention_heads} attention heads over TP={tp}"
            + ("" if s.num_attention_heads % tp == 0 else ": TP must divide them"),
        ),
        Check(
            "tp_and_kv_heads",
            s.num_key_value_heads % tp == 0 or tp % s.num_key_value_heads == 0,
            f"{s.num_key_value_heads} KV heads over TP={tp}: "
            + (
                "sharded"
                if s.num_key_value_heads % tp == 0
                else "replicated to one per rank"
                if tp % s.num_key_value_heads == 0
                else "neither divides the other; TP must divide them or be a multiple of them"
            ),
        ),
        Check(
            "tp_divides_intermediate",
            s.intermediate_size % tp == 0,
            f"intermediate_size {s.intermediate_size} over TP={tp}"
            + ("" if s.intermediate_size % tp == 0 else ": TP must divide it (optimum-neuron's MLP raises)"),
        ),
        Check(
            "sequence_within_positions",
            t.max_seq_length <= arch.max_position_embeddings,
            f"training.max_seq_length={t.max_seq_length}, the model has {arch.max_position_embeddings} positions"
            + ("" if t.max_seq_length <= arch.max_position_embeddings else ": shorten it"),
        ),
    ]
    return checks


# --- training memory ------------------------------------------------------------------------------


def _kv_heads_per_rank_training(s: DecoderShape, tp: int) -> float:
    kv = s.num_key_value_heads
    return kv / tp if kv % tp == 0 else max(1.0, math.ceil(kv / tp))


def training_weights_per_core(s: DecoderShape, tp: int) -> float:
    """Frozen bf16 weights on one rank, in bytes."""
    d, q, kv = s.hidden_size, s.head_size, _kv_heads_per_rank_training(s, tp)
    per_layer = (
        d * s.num_attention_heads * q / tp  # q_proj
        + 2 * d * q * kv  # k_proj, v_proj
        + s.num_attention_heads * q * d / tp  # o_proj
        + 3 * d * s.intermediate_size / tp  # gate, up, down
        + 2 * d  # two RMSNorms, replicated
        + (2 * q if s.qk_norm else 0)  # Qwen3's q_norm and k_norm, replicated
    )
    vocab = s.vocab_size * d / tp * (1 if s.tie_word_embeddings else 2)
    return HALF * (s.num_hidden_layers * per_layer + vocab + d)


def lora_parameters_per_core(s: DecoderShape, rank: int, targets: Sequence[str], tp: int) -> float:
    """Adapter parameters on one rank: a column-parallel layer's A is whole and its B is sharded; a
    row-parallel layer's A is sharded and its B whole (the adapter follows its base layer's split)."""
    linears = s.linear_shapes()
    per_layer = 0.0
    for name in set(targets):
        if name in COLUMN_PARALLEL:
            i, o = linears[name]
            per_layer += rank * (i + o / tp)
        elif name in ROW_PARALLEL:
            i, o = linears[name]
            per_layer += rank * (i / tp + o)
    edges = sum(
        rank * (s.vocab_size / tp + s.hidden_size) for m in ("embed_tokens", "lm_head") if m in targets
    )
    return s.num_hidden_layers * per_layer + edges


# A LoRA dropout keeps its mask (1 byte a value) and its output, which lora_A keeps for backward in the
# adapter's dtype: optimum-neuron 0.4.5 casts the input to lora_A's weight dtype before the dropout
# (optimum/neuron/peft/tuners/lora/layer.py L412-415, ``lora_B(lora_A(dropout(x)))``; L742-744 for the fused
# QKV layer), fp32 here (the module docstring).
LORA_DROPOUT_BYTES = FLOAT + 1


def lora_dropout_inputs(s: DecoderShape, targets: Sequence[str], tp: int) -> float:
    """Features per token of the inputs one layer's LoRA dropouts keep, on one rank.

    Each adapted layer drops out its own input x (layer.py L415), so layers optimum-neuron 0.4.5 fuses share
    one: gate_proj and up_proj are one ``gate_up_proj`` (models/training/llama/modeling_llama.py L196-228),
    and q/k/v are one ``qkv_proj`` when ``qkv_linear`` is set, that is when TP does not divide the KV heads
    (L316-328; Qwen3's attention is Llama's). Every input is 1/TP a rank: a column-parallel layer's x is
    split over the sequence by sequence parallelism (lora_A is a plain Linear on it, lora_B the
    ColumnParallelLinear that gathers, layer.py L182-189), a row-parallel layer's over its features."""
    targeted = set(targets)
    d, q = s.hidden_size, s.num_attention_heads * s.head_size
    qkv = targeted & {"q_proj", "k_proj", "v_proj"}
    qkv_linear = s.num_key_value_heads < tp or s.num_key_value_heads % tp != 0
    features = d * (min(len(qkv), 1) if qkv_linear else len(qkv))
    features += d if targeted & {"gate_proj", "up_proj"} else 0
    features += q if "o_proj" in targeted else 0
    features += s.intermediate_size if "down_proj" in targeted else 0
    return features / tp


def activation_bytes_per_token_layer(s: DecoderShape, t: TrainingShape) -> float:
    """What one decoder layer keeps for backward, per token, on one rank (module docstring)."""
    tp, h, i = t.tensor_parallel_size, s.hidden_size, s.intermediate_size
    q = s.num_attention_heads * s.head_size
    kept = 8 * h + 8 * q + 6 * i
    if not t.flash_attention:
        kept += 6 * s.num_attention_heads * t.max_seq_length
    dropout = 0.0
    if t.lora_dropout > 0:
        dropout = LORA_DROPOUT_BYTES * lora_dropout_inputs(s, t.lora_target_modules, tp)
    return kept / tp + dropout


def training_activations(s: DecoderShape, t: TrainingShape) -> dict[str, float]:
    """Bytes of activations on one rank for one micro-batch, without and with gradient checkpointing."""
    tokens = t.micro_batch * t.max_seq_length
    layer = activation_bytes_per_token_layer(s, t) * tokens
    layer_inputs = HALF * s.hidden_size / t.tensor_parallel_size * tokens
    return {
        "without_checkpointing": s.num_hidden_layers * layer,
        "with_checkpointing": s.num_hidden_layers * layer_inputs + layer,
    }


def training_memory(
    s: DecoderShape, t: TrainingShape, data_parallel: int
) -> tuple[dict[str, float], dict[str, float]]:
    tp = t.tensor_parallel_size
    n_lora = lora_parameters_per_core(s, t.lora_r, t.lora_target_modules, tp)
    optimizer = 2 * FLOAT * n_lora / (data_parallel if t.zero_1 else 1)
    activations = training_activations(s, t)
    chosen = activations["with_checkpointing" if t.gradient_checkpointing else "without_checkpointing"]
    logits = (HALF + FLOAT + FLOAT) * t.micro_batch * t.max_seq_length * s.vocab_size / tp
    breakdown = {
        "weights (bf16, frozen)": training_weights_per_core(s, tp),
        "LoRA weights + gradients (fp32)": 2 * FLOAT * n_lora,
        "AdamW moments (fp32" + (f", ZeRO-1 over {data_parallel})" if t.zero_1 else ")"): optimizer,
        "activations" + (" (checkpointed)" if t.gradient_checkpointing else ""): chosen,
        "logits (bf16 + fp32 loss + gradient)": logits,
    }
    return {k: _gib(v) for k, v in breakdown.items()}, {k: _gib(v) for k, v in activations.items()}


def plan_training(arch: Architecture, t: TrainingShape) -> TrainingPlan:
    inst = neuron_instance(t.instance_type, t.logical_core_size)
    if inst is None:
        check = _unknown_instance(t.instance_type, "pipeline.instances.train", "ml.trn")
        return TrainingPlan(t.instance_type, 0, 0.0, 0.0, {}, [check])
    checks = training_shape_checks(arch, t, inst)
    if inst.family == "trn2":
        checks.insert(0, _logical_core_check(inst))
    s, tp = arch.shape, t.tensor_parallel_size
    data_parallel = max(inst.cores * t.instance_count // tp, 1)
    breakdown, activations = training_memory(s, t, data_parallel)
    used, limit = sum(breakdown.values()), _gib(inst.hbm_bytes_per_core)
    checks.append(_memory_check("training", used, limit, inst))
    if t.evaluate_instance_type is not None:
        checks.append(evaluate_host_check(s, t.evaluate_instance_type))
    flops = flops_per_token(s, t.max_seq_length, t.lora_r, t.lora_target_modules, t.gradient_checkpointing)
    peak = inst.peak_flops_per_core * inst.cores * t.instance_count
    return TrainingPlan(
        t.instance_type,
        inst.cores,
        used,
        limit,
        breakdown,
        checks,
        data_parallel=data_parallel,
        activations_gib=activations,
        flops=flops,
        tokens_per_second_ceiling=peak / flops.hardware_per_token,
    )


def _logical_core_check(inst: NeuronInstance) -> Check:
    """optimum-neuron 0.4.5 runs trn2 at LNC=2 only: it counts 4 logical cores a Trainium2 device, "the
    runtime can be configured to expose 8 cores per device, but it is not supported in optimum-neuron"
    (optimum/neuron/utils/system.py L54-61). LNC=1 is modelled (12 GiB a core, config/hardware.py) so the
    plan can say what it would hold, and refused."""
    ok = inst.logical_core_size == 2
    return Check(
        "logical_cores",
        ok,
        f"LNC={inst.logical_core_size} on {inst.instance_type}"
        + (
            ": optimum-neuron 0.4.5's default"
            if ok
            else ": optimum-neuron 0.4.5 supports LNC=2 only (utils/system.py); leave "
            "NEURON_LOGICAL_NC_CONFIG unset or set it to 2"
        ),
    )


def _memory_check(side: str, used: float, limit: float, inst: NeuronInstance) -> Check:
    lnc = f" (LNC={inst.logical_core_size})" if inst.family == "trn2" else ""
    reason = f"{used:.2f} GiB per NeuronCore of {limit:.0f} GiB on {inst.instance_type}{lnc}"
    if used > limit:
        return Check(f"{side}_memory", False, reason + ": does not fit")
    if used > NEAR_LIMIT * limit:
        reason += f": above {NEAR_LIMIT:.0%}, and the Neuron runtime's own share is not counted"
    return Check(f"{side}_memory", True, reason)


# --- serving memory -------------------------------------------------------------------------------


def serving_head_counts(s: DecoderShape, tp: int) -> tuple[int, int]:
    """(attention heads, KV heads) after optimum-neuron's inference padding (gqa.py,
    ``get_shardable_head_counts``)."""
    heads, kv = s.num_attention_heads, s.num_key_value_heads
    padded = heads + (0 if heads % tp == 0 else tp - heads % tp)
    if heads == kv:
        return padded, padded
    if kv < tp or kv % tp != 0:
        return padded, (tp if tp % kv == 0 else padded)
    return padded, kv


def serving_memory(s: DecoderShape, v: ServingShape) -> dict[str, float]:
    tp, d, q = v.tensor_parallel_size, s.hidden_size, s.head_size
    heads, kv = serving_head_counts(s, tp)
    norms = 2 * d + (2 * q if s.qk_norm else 0)
    per_layer = (2 * d * heads * q + 2 * d * kv * q + 3 * d * s.intermediate_size) / tp + norms
    vocab = s.vocab_size * d / tp * (1 if s.tie_word_embeddings else 2)
    weights = HALF * (s.num_hidden_layers * per_layer + vocab + d)
    cache = 2 * s.num_hidden_layers * (kv / tp) * q * v.batch_size * v.sequence_length * HALF
    return {f"weights ({v.dtype})": _gib(weights), "KV cache": _gib(cache)}


def serving_checks(arch: Architecture, v: ServingShape, inst: NeuronInstance) -> list[Check]:
    s, tp = arch.shape, v.tensor_parallel_size
    heads, kv = serving_head_counts(s, tp)
    too_small = [
        f"{t} ({i.cores})"
        for t in v.supported_instance_types
        if (i := neuron_instance(t)) is not None and i.cores < tp
    ]
    padding = (
        f"{s.num_attention_heads} attention heads padded to {heads}, {s.num_key_value_heads} KV heads to {kv}"
        if (heads, kv) != (s.num_attention_heads, s.num_key_value_heads)
        else f"{heads} attention and {kv} KV heads shard evenly"
    )
    supported = SERVING_TP_DEGREES[inst.family]
    return [
        _serving_family_check(inst),
        Check(
            "tp_supported",
            tp in supported,
            f"serving.tensor_parallel_size={tp}: the Neuron runtime serves {inst.family} at TP "
            + ", ".join(map(str, supported))
            + ("" if tp in supported else " (NxD Inference feature guide); pick one of them"),
        ),
        Check(
            "tp_within_cores",
            tp <= inst.cores,
            f"serving.tensor_parallel_size={tp}, {inst.instance_type} (infra.endpoint.instance_type) has "
            f"{inst.cores} NeuronCores" + ("" if tp <= inst.cores else ": TP cannot exceed them"),
        ),
        Check(
            "supported_types_hold_tp",
            not too_small,
            "serving.instance_types: "
            + (
                f"{', '.join(too_small)} have fewer NeuronCores than TP={tp}"
                if too_small
                else f"all hold TP={tp}"
            ),
        ),
        Check(
            "head_padding",
            True,
            padding + f" over TP={tp} (optimum-neuron pads; it costs memory, not a refusal)",
        ),
        Check(
            "sequence_within_positions",
            v.sequence_length <= arch.max_position_embeddings,
            f"serving.sequence_length={v.sequence_length}, the model has {arch.max_position_embeddings} positions"
            + ("" if v.sequence_length <= arch.max_position_embeddings else ": shorten it"),
        ),
    ]


# The families the project serves on: the compile step exports for each (inference/compile.py
# NEURON_TARGETS, config/schema.py SERVING_TARGETS).
SERVING_FAMILIES = ("inf2", "trn2")
SERVING_FAMILY_NOTE = (
    "the project serves on ml.inf2 and ml.trn2 only, the two endpoint families the compile step exports for "
    "(inference/compile.py; trn1 shares inf2's compile target, but serving.instance_types takes neither trn1 "
    "type)"
)
# Said beside every trn2 endpoint, as a warning (not checked), never a refusal: what upstream says of it.
TRN2_SERVING_NOTE = (
    "optimum-neuron 0.4.5's vLLM plugin guide says \"Trn2 instances are not supported by the `optimum-neuron` "
    'platform yet" (docs/source/guides/vllm_plugin.mdx L22, written 2025-07), while its own benchmarks serve '
    "Llama-3.1-8B-Instruct on trn2.48xlarge through the same `optimum-cli neuron serve` at TP 4, batch 32, "
    "4096 tokens (benchmark/vllm/single-instance/llama-3.1-8b-trn2/.env, 2025-10); its CI only cross-compiles "
    "trn2 artifacts on an inf2 runner (.github/workflows/cache_llm.yml L55-57) and serves none on trn2; rehearse "
    "the endpoint before relying on it"
)


def _serving_family_check(inst: NeuronInstance) -> Check:
    served = inst.family in SERVING_FAMILIES
    return Check(
        "serving_family",
        served,
        f"infra.endpoint.instance_type={inst.instance_type}"
        + (
            f" is an endpoint type of {inst.family}"
            if served
            else f": {SERVING_FAMILY_NOTE}; pick an ml.inf2 type or ml.trn2.48xlarge"
        ),
    )


def _trn2_serving_check(inst: NeuronInstance) -> Check:
    return Check("trn2_serving_upstream", None, f"{inst.instance_type}: {TRN2_SERVING_NOTE}")


def compile_host_check(s: DecoderShape, v: ServingShape) -> Check:
    from training.flops import parameter_count

    need = _gib(COMPILE_HOST_FACTOR * HALF * parameter_count(s))
    ram = host_gib(v.compile_instance_type)
    where = f"pipeline.instances.compile={v.compile_instance_type}"
    if ram is None:
        return Check("compile_host_ram", None, f"{where}: its RAM is not in the planner's table; not checked")
    return Check(
        "compile_host_ram",
        need <= ram,
        f"{where} has {ram} GiB; the export holds about {need:.1f} GiB ({COMPILE_HOST_FACTOR:g} x the "
        f"{v.dtype} weights, an estimate)",
    )


def endpoint_host_check(s: DecoderShape, v: ServingShape, inst: NeuronInstance) -> Check:
    """A warning when the endpoint's host RAM is under ENDPOINT_HOST_FACTOR times the weights."""
    from training.flops import parameter_count

    weights = _gib(HALF * parameter_count(s))
    where = f"infra.endpoint.instance_type={inst.instance_type} has {inst.host_gib} GiB of host RAM"
    if inst.host_gib >= ENDPOINT_HOST_FACTOR * weights:
        return Check(
            "endpoint_host_ram",
            True,
            f"{where}, over {ENDPOINT_HOST_FACTOR:g} x the {weights:.1f} GiB of weights",
        )
    return Check(
        "endpoint_host_ram",
        None,
        f"{where} for {weights:.1f} GiB of {v.dtype} weights: loading passes them through host memory and no "
        f"published figure says how much it needs; under {ENDPOINT_HOST_FACTOR:g} x the weights it may run out "
        f"(a bigger {inst.family} type has more)",
    )


def evaluate_host_check(s: DecoderShape, instance_type: str) -> Check:
    """The evaluate step's host RAM against EVALUATE_HOST_FACTOR x the fp32 weights (see there)."""
    from training.flops import parameter_count

    need = _gib(EVALUATE_HOST_FACTOR * FLOAT * parameter_count(s))
    ram = host_gib(instance_type)
    where = f"pipeline.instances.evaluate={instance_type}"
    if ram is None:
        return Check(
            "evaluate_host_ram", None, f"{where}: its RAM is not in the planner's table; not checked"
        )
    bigger = [t for t, gib in CPU_HOST_GIB.items() if gib >= need]
    fits = need <= ram
    return Check(
        "evaluate_host_ram",
        fits,
        f"{where} has {ram} GiB; CPU generation holds about {need:.1f} GiB ({EVALUATE_HOST_FACTOR:g} x the "
        "fp32 weights, an estimate: a CPU without fast bf16 evaluates in fp32)"
        + (
            ""
            if fits
            else f": does not fit; pick {bigger[0]} or larger"
            if bigger
            else ": no m5 type holds it"
        ),
    )


def plan_serving(arch: Architecture, v: ServingShape) -> SidePlan:
    inst = neuron_instance(v.instance_type)
    if inst is None:
        return SidePlan(
            v.instance_type,
            0,
            0.0,
            0.0,
            {},
            [
                _unknown_instance(
                    v.instance_type,
                    "infra.endpoint.instance_type",
                    ("ml.inf2.", "ml.trn2."),
                    SERVING_FAMILY_NOTE,
                )
            ],
        )
    checks = serving_checks(arch, v, inst)
    if inst.family == "trn2":
        checks.insert(1, _trn2_serving_check(inst))
    breakdown = serving_memory(arch.shape, v)
    used, limit = sum(breakdown.values()), _gib(inst.hbm_bytes_per_core)
    checks.append(_memory_check("serving", used, limit, inst))
    checks.append(compile_host_check(arch.shape, v))
    checks.append(endpoint_host_check(arch.shape, v, inst))
    return SidePlan(v.instance_type, inst.cores, used, limit, breakdown, checks)


# --- the smallest change that fits ----------------------------------------------------------------

# A candidate fix: (config key, value) pairs applied together, named in that order by ``_say``.
Change = tuple[tuple[str, object], ...]

_TRAINING_FIELDS = {
    "training.gradient_checkpointing": "gradient_checkpointing",
    "training.tensor_parallel_size": "tensor_parallel_size",
    "training.per_device_train_batch_size": "micro_batch",
    "training.max_seq_length": "max_seq_length",
    "pipeline.instances.train": "instance_type",
    "pipeline.instances.evaluate": "evaluate_instance_type",
}
_SERVING_FIELDS = {
    "serving.instance_types": "supported_instance_types",
    "serving.tensor_parallel_size": "tensor_parallel_size",
    "serving.batch_size": "batch_size",
    "serving.sequence_length": "sequence_length",
    "infra.endpoint.instance_type": "instance_type",
    "pipeline.instances.compile": "compile_instance_type",
}


def _halvings(value: int, floor: int) -> list[int]:
    out = []
    while value // 2 >= floor:
        value //= 2
        out.append(value)
    return out


def _nearest(current: int, allowed: Sequence[int]) -> list[int]:
    """The other allowed TP degrees, nearest first, the higher one first on a tie (more memory)."""
    return sorted((n for n in allowed if n != current), key=lambda n: (abs(n - current), -n))


def _first_fit(candidates: list[Change], build: Callable[[Change], SidePlan]) -> Change | None:
    """The first candidate that fits below the near-limit line; only when none does, the first that fits
    at all (a fix at 97% of a core is no fix while a comfortable one exists)."""
    tight: Change | None = None
    for change in candidates:
        plan = build(change)
        if plan.fits and plan.comfortable:
            return change
        if plan.fits and tight is None:
            tight = change
    return tight


def _apply(shape: Any, change: Change, fields: dict[str, str]) -> Any:
    return dataclasses.replace(shape, **{fields[key]: value for key, value in change})


def training_fix(arch: Architecture, t: TrainingShape) -> str | None:
    """The first change, in this order, that fits: gradient checkpointing on, another TP, a smaller
    micro-batch, a shorter sequence, a bigger instance of the family, then a bigger instance with the TP
    that spreads the model over it. Cheapest first: the first two change no result, the next two change
    the run, the last cost more. A fix that fits comfortably wins over an earlier one near the limit."""
    inst = neuron_instance(t.instance_type, t.logical_core_size)
    candidates: list[Change] = []
    if not t.gradient_checkpointing:
        candidates.append((("training.gradient_checkpointing", True),))
    degrees = training_tp_degrees(inst) if inst else ()
    candidates += [(("training.tensor_parallel_size", n),) for n in _nearest(t.tensor_parallel_size, degrees)]
    candidates += [(("training.per_device_train_batch_size", n),) for n in _halvings(t.micro_batch, 1)]
    candidates += [(("training.max_seq_length", n),) for n in _halvings(t.max_seq_length, 16)]
    family = t.instance_type.rsplit(".", 1)[0] + "."
    cores, hbm = (inst.cores, inst.hbm_bytes_per_core) if inst else (0, 0)
    bigger = [i for i in neuron_types(family) if i.cores > cores or i.hbm_bytes_per_core > hbm]
    candidates += [(("pipeline.instances.train", i.instance_type),) for i in bigger]
    candidates += [
        (("pipeline.instances.train", i.instance_type), ("training.tensor_parallel_size", tp))
        for i in bigger
        for tp in training_tp_degrees(i)
        if tp > t.tensor_parallel_size
    ]
    if (
        t.evaluate_instance_type is not None
        and evaluate_host_check(arch.shape, t.evaluate_instance_type).ok is False
    ):
        # Nothing fits without a bigger evaluate host, which is independent of the rest: it alone first, then
        # with each of the above (smallest host first).
        evaluate: list[Change] = [(("pipeline.instances.evaluate", name),) for name in CPU_HOST_GIB]
        candidates = evaluate + [c + e for c in candidates for e in evaluate]
    return _say(_first_fit(candidates, lambda c: plan_training(arch, _apply(t, c, _TRAINING_FIELDS))))


def _holding_tp(v: ServingShape) -> tuple[str, ...]:
    """serving.instance_types less the types with fewer NeuronCores than the TP (the compiled artifact cannot
    run on them); the endpoint's type alone if none is left."""
    kept = tuple(
        t
        for t in v.supported_instance_types
        if (i := neuron_instance(t)) is None or i.cores >= v.tensor_parallel_size
    )
    return kept or (v.instance_type,)


def _with_types_holding_tp(v: ServingShape, change: Change) -> Change:
    """A serving change, plus narrowing serving.instance_types when the TP it leads to no longer fits some."""
    changed = _apply(v, change, _SERVING_FIELDS)
    kept = _holding_tp(changed)
    if kept == changed.supported_instance_types:
        return change
    return (*change, ("serving.instance_types", kept))


def serving_fix(arch: Architecture, v: ServingShape) -> str | None:
    """As for training: the free change first (dropping from serving.instance_types the types that cannot
    hold the TP), then another TP the runtime supports, a smaller batch, a shorter sequence, a bigger
    instance of the endpoint's family, a compile host with more RAM, then a bigger instance with the TP it
    needs. Any change that raises the TP above a listed type's cores also drops that type. The family stays
    the endpoint's when it is one the project serves on (inf2 or trn2: the artifact is compiled for one);
    otherwise the fix is an inf2 type."""
    inst = neuron_instance(v.instance_type)
    served = inst is not None and inst.family in SERVING_FAMILIES
    family = f"ml.{inst.family}." if inst is not None and served else "ml.inf2."
    cores = inst.cores if inst is not None and served else 0
    candidates: list[Change] = []
    if _holding_tp(v) != v.supported_instance_types:
        candidates.append((("serving.instance_types", _holding_tp(v)),))
    if inst is not None and served:
        degrees = serving_tp_degrees(inst)
        candidates += [
            (("serving.tensor_parallel_size", n),) for n in _nearest(v.tensor_parallel_size, degrees)
        ]
    candidates += [(("serving.batch_size", n),) for n in _halvings(v.batch_size, 1)]
    candidates += [(("serving.sequence_length", n),) for n in _halvings(v.sequence_length, 16)]
    bigger = [i for i in neuron_types(family) if i.cores > cores]
    candidates += [(("infra.endpoint.instance_type", i.instance_type),) for i in bigger]
    candidates += [(("pipeline.instances.compile", name),) for name in CPU_HOST_GIB]
    candidates += [
        (("infra.endpoint.instance_type", i.instance_type), ("serving.tensor_parallel_size", tp))
        for i in bigger
        for tp in serving_tp_degrees(i)
        if tp > v.tensor_parallel_size
    ]
    candidates = [_with_types_holding_tp(v, c) for c in candidates]
    return _say(_first_fit(candidates, lambda c: plan_serving(arch, _apply(v, c, _SERVING_FIELDS))))


def _shown(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):  # a YAML flow list, as --set reads it
        return "[" + ",".join(str(v) for v in value) + "]"
    return str(value)


def _say(found: Change | None) -> str | None:
    """The change as the --set flags that make it; a list is quoted, since a shell globs its brackets."""
    if found is None:
        return None
    flags = []
    for key, value in found:
        flag = f"{key}={_shown(value)}"
        flags.append(f"--set '{flag}'" if isinstance(value, tuple) else f"--set {flag}")
    return " ".join(flags)


def make_plan(arch: Architecture, t: TrainingShape, v: ServingShape) -> Plan:
    training = plan_training(arch, t)
    serving = plan_serving(arch, v)
    if not training.fits:
        training = dataclasses.replace(training, fix=training_fix(arch, t))
    if not serving.fits:
        serving = dataclasses.replace(serving, fix=serving_fix(arch, v))
    return Plan(training, serving)


# --- from the project config ----------------------------------------------------------------------


def architecture_of(cfg: ProjectConfig) -> Architecture:
    a = cfg.model.architecture
    return Architecture(decoder_shape(a), a.max_position_embeddings)


def shapes_of(cfg: ProjectConfig) -> tuple[TrainingShape, ServingShape]:
    hp, instances, serving = cfg.training, cfg.pipeline.instances, cfg.serving
    training = TrainingShape(
        instance_type=instances.train,
        instance_count=instances.train_count,
        tensor_parallel_size=hp.tensor_parallel_size,
        zero_1=hp.zero_1,
        micro_batch=hp.per_device_train_batch_size,
        gradient_accumulation_steps=hp.gradient_accumulation_steps,
        max_seq_length=hp.max_seq_length,
        gradient_checkpointing=hp.gradient_checkpointing,
        lora_r=hp.lora_r,
        lora_target_modules=tuple(hp.lora_target_modules),
        lora_dropout=hp.lora_dropout,
        evaluate_instance_type=instances.evaluate,
    )
    endpoint = ServingShape(
        instance_type=cfg.infra.endpoint.instance_type,
        supported_instance_types=tuple(serving.instance_types),
        tensor_parallel_size=serving.tensor_parallel_size,
        batch_size=serving.batch_size,
        sequence_length=serving.sequence_length,
        dtype=serving.dtype,
        compile_instance_type=instances.compile,
    )
    return training, endpoint


def plan_config(cfg: ProjectConfig) -> Plan:
    training, serving = shapes_of(cfg)
    return make_plan(architecture_of(cfg), training, serving)


def refusal(plan: Plan) -> str | None:
    """Why the plan does not fit, and the change that would, as one message; None when it fits."""
    lines = []
    for side, part in (("training", plan.training), ("serving", plan.serving)):
        if part.fits:
            continue
        lines += [f"{side}: {c.name}: {c.reason}" for c in part.failures]
        lines.append(
            f"{side}: smallest change that fits: {part.fix}"
            if part.fix
            else f"{side}: no single change fits; see `mlops plan` for the memory per core"
        )
    return "\n".join(lines) if lines else None


def enforce_plan(cfg: ProjectConfig) -> Plan:
    """Refuse a config whose training or serving does not fit (a UserError with the reasons and the fix),
    unless ``plan.enforce`` is false: then log a warning and go on."""
    plan = plan_config(cfg)
    problem = refusal(plan)
    if problem is None:
        return plan
    if cfg.plan.enforce:
        raise UserError(
            "the config does not fit the hardware (mlops plan shows the details):\n"
            + "\n".join(f"  {line}" for line in problem.splitlines())
            + "\n  or, to go ahead anyway: --set plan.enforce=false"
        )
    log.warning("plan.enforce=false: going ahead although the config does not fit:\n%s", problem)
    return plan
