"""FLOPs per token of a dense decoder (the Llama and Qwen3 families), from its architecture alone.

The bottom layer: the planner (``config/plan.py``) states a tokens-per-second ceiling with it, and the
training report states MFU against the same figure, so the two can never disagree.

**Counting.** Only matrix multiplications are counted (norms, softmax, rotary and the embedding lookup
are a rounding error at these sizes), as in the PaLM paper, appendix B ("Model FLOPs utilization",
Chowdhery et al. 2022, https://arxiv.org/abs/2204.02311): a multiply-add is 2 FLOPs, so a token costs
``2·N`` forward, where ``N`` is the weights it is multiplied by, plus the attention scores
``4·L·H·Q·T`` (``QKᵀ`` and ``softmax·V``, each ``2·T·Q`` per head, per layer); training adds the
backward pass, twice the forward, for PaLM's ``6N + 12·L·H·Q·T``. Chinchilla (Hoffmann et al. 2022,
appendix F) and Megatron-LM (Narayanan et al. 2021, section 5.1) count the same terms; we follow PaLM
in two choices: the attention term is the full ``T×T`` (no halving for the causal mask, so our MFU is
comparable to the published ones), and ``N`` is the matmul weights: every linear layer plus the LM
head, never the input embedding (a lookup, no FLOPs; the head is counted even when its weights are
tied to the embedding, because the matmul happens either way).

**LoRA.** The base weights are frozen: the backward pass still needs the gradient of every activation
(``2·N``, through the frozen weights) but no weight gradient for them (the other ``2·N``). The adapters
train fully (``6·N_lora``), and attention has no weights, so its backward is still twice its forward::

    lora = 4·N + 6·N_lora + 12·L·H·Q·T        full fine-tune = 6·N + 12·L·H·Q·T

**Model FLOPs for MFU** are the LoRA figure: the FLOPs the training step needs, without the forward that
gradient checkpointing recomputes (PaLM's model vs hardware FLOPs: recomputation is hardware work, not
model work). ``hardware_per_token`` adds that recomputation, for a ceiling on what the chip executes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DecoderShape:
    """A dense decoder's architecture, as its Hugging Face ``config.json`` names it."""

    num_hidden_layers: int
    hidden_size: int
    num_attention_heads: int
    num_key_value_heads: int
    intermediate_size: int
    vocab_size: int
    # Qwen3 sets head_dim apart from hidden_size / heads (Qwen3-0.6B: 1024 / 16 heads, head_dim 128);
    # Llama derives it. None: derive it.
    head_dim: int | None = None
    tie_word_embeddings: bool = False
    # Qwen3 normalises each head's queries and keys (q_norm, k_norm: head_dim weights each a layer); Llama does
    # not. A family trait, not a consequence of head_dim: Llama-3.2-1B's config.json sets head_dim too.
    qk_norm: bool = False

    @property
    def head_size(self) -> int:
        return self.head_dim or self.hidden_size // self.num_attention_heads

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of each linear layer of one decoder layer, by its module name (Llama's and
        Qwen3's names; both have no biases: attention_bias and mlp_bias are false in their configs)."""
        d, q = self.hidden_size, self.head_size
        return {
            "q_proj": (d, self.num_attention_heads * q),
            "k_proj": (d, self.num_key_value_heads * q),
            "v_proj": (d, self.num_key_value_heads * q),
            "o_proj": (self.num_attention_heads * q, d),
            "gate_proj": (d, self.intermediate_size),
            "up_proj": (d, self.intermediate_size),
            "down_proj": (self.intermediate_size, d),
        }


def decoder_shape(config: Any) -> DecoderShape:
    """The shape of anything named as a Hugging Face ``config.json`` names it: a transformers config
    (the training report's MFU) or the project config's ``model.architecture`` (the planner), so both
    build it one way. Qwen3's q_norm/k_norm (2·head_dim weights a layer) come with ``model_type ==
    "qwen3"``, which ``model.architecture.model_type`` names too."""
    return DecoderShape(
        num_hidden_layers=config.num_hidden_layers,
        hidden_size=config.hidden_size,
        num_attention_heads=config.num_attention_heads,
        num_key_value_heads=getattr(config, "num_key_value_heads", None) or config.num_attention_heads,
        intermediate_size=config.intermediate_size,
        vocab_size=config.vocab_size,
        head_dim=getattr(config, "head_dim", None),
        tie_word_embeddings=bool(getattr(config, "tie_word_embeddings", False)),
        qk_norm=getattr(config, "model_type", None) == "qwen3",  # Qwen3's q_norm/k_norm (training/flops.py)
    )


def layer_matmul_parameters(shape: DecoderShape) -> int:
    """Weights of one decoder layer's linear layers (norm weights left out: they are not matmuls)."""
    return sum(i * o for i, o in shape.linear_shapes().values())


def matmul_parameters(shape: DecoderShape) -> int:
    """``N`` of the module docstring: every linear layer's weights plus the LM head."""
    return shape.num_hidden_layers * layer_matmul_parameters(shape) + shape.vocab_size * shape.hidden_size


def parameter_count(shape: DecoderShape) -> int:
    """Every stored weight: embedding, layers (with their norms), final norm, and the head unless tied.

    This is what memory holds; Qwen3's q_norm/k_norm weights are included (2·head_dim a layer, ``qk_norm``)."""
    d = shape.hidden_size
    norms_per_layer = 2 * d + (2 * shape.head_size if shape.qk_norm else 0)
    layers = shape.num_hidden_layers * (layer_matmul_parameters(shape) + norms_per_layer)
    embedding = shape.vocab_size * d
    head = 0 if shape.tie_word_embeddings else shape.vocab_size * d
    return embedding + layers + d + head


def lora_parameters(shape: DecoderShape, rank: int, target_modules: Sequence[str]) -> int:
    """Adapter weights: A (in × r) and B (r × out) for each targeted linear layer of every layer, plus
    ``embed_tokens`` (peft's embedding adapter: r × vocab and hidden × r) and ``lm_head`` when targeted
    (the optimum-neuron Llama tutorial targets embed_tokens). Other names add nothing."""
    targets = set(target_modules)
    linears = shape.linear_shapes()
    per_layer = sum(rank * (linears[m][0] + linears[m][1]) for m in targets if m in linears)
    edges = sum(
        rank * (shape.vocab_size + shape.hidden_size) for m in ("embed_tokens", "lm_head") if m in targets
    )
    return shape.num_hidden_layers * per_layer + edges


def lora_matmul_parameters(shape: DecoderShape, rank: int, target_modules: Sequence[str]) -> int:
    """The adapter weights a token is multiplied by: an embedding adapter's A is a lookup, not a matmul."""
    lookup = rank * shape.vocab_size if "embed_tokens" in set(target_modules) else 0
    return lora_parameters(shape, rank, target_modules) - lookup


def attention_forward_flops(shape: DecoderShape, sequence_length: int) -> int:
    """``4·L·H·Q·T`` per token: the score and value matmuls over the whole sequence (PaLM appendix B)."""
    return 4 * shape.num_hidden_layers * shape.num_attention_heads * shape.head_size * sequence_length


@dataclass(frozen=True)
class FlopsPerToken:
    """FLOPs per token, each a different question (the module docstring says which counts for MFU)."""

    forward: int  # 2·N + 4·L·H·Q·T: inference, and one recomputation
    full_training: int  # 6·N + 12·L·H·Q·T: PaLM's figure for training every weight
    lora_training: int  # 4·N + 6·N_lora + 12·L·H·Q·T: the model FLOPs this project's MFU uses
    hardware_per_token: int  # lora_training plus the recomputed forward under gradient checkpointing

    @property
    def model_flops(self) -> int:
        """The figure MFU is stated against (LoRA training, no recomputation)."""
        return self.lora_training


def flops_per_token(
    shape: DecoderShape,
    sequence_length: int,
    lora_rank: int,
    lora_target_modules: Sequence[str],
    gradient_checkpointing: bool,
) -> FlopsPerToken:
    n = matmul_parameters(shape)
    n_lora = lora_matmul_parameters(shape, lora_rank, lora_target_modules)
    attention = attention_forward_flops(shape, sequence_length)
    forward = 2 * (n + n_lora) + attention
    lora = 4 * n + 6 * n_lora + 3 * attention
    return FlopsPerToken(
        forward=forward,
        full_training=6 * n + 3 * attention,
        lora_training=lora,
        hardware_per_token=lora + (forward if gradient_checkpointing else 0),
    )


def model_flops_utilization(tokens_per_second: float, model_flops: int, peak_flops: float) -> float:
    """MFU: the model FLOPs achieved per second over the peak of the cores that did the work."""
    return tokens_per_second * model_flops / peak_flops
