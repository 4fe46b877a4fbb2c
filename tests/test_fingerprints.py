"""The tokenizer fingerprint names the tokenizer, not the settings of its last call."""

from __future__ import annotations


def test_a_truncating_call_does_not_change_the_tokenizer_fingerprint(smollm2_tokenizer):
    from training.fingerprints import tokenizer_fingerprint

    before = tokenizer_fingerprint(smollm2_tokenizer)
    smollm2_tokenizer("some text to cut", truncation=True, max_length=3)
    assert smollm2_tokenizer.backend_tokenizer.truncation is not None  # the call left its setting behind
    assert tokenizer_fingerprint(smollm2_tokenizer) == before
    smollm2_tokenizer.backend_tokenizer.no_truncation()


def test_another_vocabulary_changes_the_fingerprint(smollm2_tokenizer):
    import copy

    from training.fingerprints import tokenizer_fingerprint

    other = copy.deepcopy(smollm2_tokenizer)
    other.add_tokens(["<a-token-the-base-model-lacks>"])
    assert tokenizer_fingerprint(other) != tokenizer_fingerprint(smollm2_tokenizer)
