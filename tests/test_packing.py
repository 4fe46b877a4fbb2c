import numpy as np
from packing_checks import assert_packed_examples_do_not_attend_to_each_other

from training.job import BlockSampler
from training.packing import pack_into_blocks
from training.tokenize import IGNORE_INDEX


def test_blocks_have_one_shape_and_positions_restart():
    ids = [[1] * n for n in (5, 3, 7, 2, 8)]
    labels = [[7] * n for n in (5, 3, 7, 2, 8)]
    blocks = pack_into_blocks(ids, labels, 10, pad_token_id=0)
    assert blocks.input_ids.shape == blocks.labels.shape == blocks.position_ids.shape
    assert blocks.block_length == 10
    assert blocks.real_tokens == 25
    for b in range(blocks.num_blocks):
        starts = np.flatnonzero(blocks.position_ids[b] == 0)
        # the first token of every example carries no loss (it would be predicted across a boundary)
        for s in starts:
            assert blocks.labels[b, s] == IGNORE_INDEX
    assert (blocks.labels[blocks.input_ids == 0] == IGNORE_INDEX).all()


def test_sampler_always_gives_full_batches_deterministically():
    s = BlockSampler(num_blocks=5, batch_size=4, seed=1)
    batches = [s.indices(m) for m in range(10)]
    assert all(len(b) == 4 for b in batches)
    assert batches == [BlockSampler(5, 4, 1).indices(m) for m in range(10)]


def test_packed_examples_do_not_attend_to_each_other():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=50,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
        )
    ).eval()
    assert_packed_examples_do_not_attend_to_each_other(model)
