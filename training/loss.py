"""Token loss at target positions only, shared by training, its validation pass and `evaluate`.

Works on a plain causal LM (for a PEFT model pass ``peft_model.get_base_model()``: the LoRA layers
live inside it). The LM head runs only where a label exists: on a small model the vocabulary
projection is a large share of the compute.
"""

from __future__ import annotations

from typing import Any

import torch

from training.packing import PackedBlocks
from training.tokenize import IGNORE_INDEX


def token_loss_sum(
    model: Any, ids: torch.Tensor, labels: torch.Tensor, pos: torch.Tensor
) -> tuple[torch.Tensor, int]:
    """Sum of token losses at target positions, and how many there were."""
    # No attention mask + restarting position_ids + no cache = block-diagonal causal attention
    # (see training/packing.py).
    hidden = model.get_decoder()(input_ids=ids, position_ids=pos, use_cache=False).last_hidden_state
    targets = labels[:, 1:]
    keep = targets != IGNORE_INDEX
    logits = model.get_output_embeddings()(hidden[:, :-1][keep])
    loss = torch.nn.functional.cross_entropy(logits.float(), targets[keep], reduction="sum")
    return loss, int(keep.sum())


@torch.no_grad()
def mean_token_loss(
    model: Any, blocks: PackedBlocks, batch_size: int, device: torch.device, amp: torch.dtype | None
) -> tuple[float, int]:
    """(mean loss per target token over all blocks, target tokens), always in batches of ``batch_size``
    so every forward pass has one shape."""
    was_training = model.training
    model.eval()
    n = blocks.num_blocks
    total, count = 0.0, 0
    for start in range(0, n, batch_size):
        # Fill the last batch by wrapping around, and weigh the repeats out: same shape, exact mean.
        idx = [(start + i) % n for i in range(batch_size)]
        ids = torch.from_numpy(blocks.input_ids[idx]).to(device)
        labels = torch.from_numpy(blocks.labels[idx]).to(device)
        labels[min(batch_size, n - start) :] = IGNORE_INDEX
        pos = torch.from_numpy(blocks.position_ids[idx]).to(device)
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            loss, k = token_loss_sum(model, ids, labels, pos)
        total += float(loss)
        count += k
    model.train(was_training)
    return total / max(count, 1), count
