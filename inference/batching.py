"""Continuous batching for the CPU/CUDA server: requests join and leave a running batch between tokens.

Why not ``generate``: a static batch through ``model.generate`` runs to its longest member, and a request
that arrives meanwhile waits for the whole batch before its prefill starts (issue 17 measured p99 2.8 s
at 8 clients). Here every step decodes one token for each running row; a row that is done leaves at the
next step and a waiting request is prefilled and joins the same step, so short answers return early and
new requests start within one token step.

Why this and not a compiled CPU engine (llama.cpp, ONNX Runtime, OpenVINO): each is a second model
runtime with its own conversion and numerics to keep equal to the transformers path that `evaluate`,
the fine-tune and the Neuron export share. This is ~150 lines over the same ``model.forward``, so the
tokens the server returns are the tokens `evaluate` scores.

How the batch is held (one ``DynamicCache`` for all rows, transformers 4.57):

* Rows are left-padded to a common cache length ``T``: the keys/values of every layer are
  ``[rows, kv_heads, T, head_dim]`` and a 2-D ``attention_mask`` ``[rows, T]`` is 0 over a row's
  padding, so no row attends to another row's padding or to its own.
* ``position_ids`` count only a row's real tokens, so rotary embeddings see the same positions as when
  the row runs alone. Greedy output therefore does not depend on which rows share the batch (up to
  floating-point summation order; ``tests/test_server_batching.py`` checks the tokens are equal).
* A step: drop finished rows (``Cache.batch_select_indices``) and the cache columns that are now
  padding in every row; decode one token for the rows already running; prefill the newcomers together
  (left-padded among themselves, logits for the last position only) and concatenate their cache,
  padding the shorter side on the left. A row's padding may also sit between a reused prefix and the
  rest of its prompt: the mask and ``position_ids`` make the place of padding irrelevant.
* Prefix reuse: the keys/values of the last ``max_prefixes`` prompts are kept (one row each); a newcomer
  that shares a prefix with one of them (a deployment's fixed system prompt: 35 of the ~62 tokens of
  the date task's requests) starts from those and prefills only the rest, as vLLM's automatic prefix
  caching does. Causal attention makes a prefix's keys/values independent of what follows it, so the
  tokens are the same; the prefill, which is most of a short answer's compute on CPU, shrinks.
* Greedy is ``argmax``; sampling applies temperature, then top-p (transformers' logits warpers) per row,
  since each row carries its own settings.

Everything here runs on the server's one generation thread; the scheduling (who joins, who leaves)
lives in ``inference/server.py`` on the event loop.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0


def _left_pad(tensor: Any, width: int, dim: int) -> Any:
    """``tensor`` padded with zeros on the left of ``dim`` (a negative index) to ``width``."""
    import torch.nn.functional as F

    missing = width - tensor.shape[dim]
    if missing == 0:
        return tensor
    # F.pad lists (left, right) pairs from the last dimension backwards.
    return F.pad(tensor, (0, 0) * (-dim - 1) + (missing, 0))


class RowBatch:
    """The running rows: their shared KV cache, attention mask, next positions and last tokens."""

    def __init__(self, model: Any, pad_id: int, max_prefixes: int = 8) -> None:
        self.model, self.pad_id, self.max_prefixes = model, pad_id, max_prefixes
        self.device = next(model.parameters()).device
        self.cache: Any = None  # DynamicCache, or None while no row runs
        self.mask: Any = None  # [rows, T] long: 1 over real tokens
        self.positions: Any = None  # [rows] position of each row's next token (= its real length)
        self.last: Any = None  # [rows] each row's newest token, the next step's input
        self.sampling: list[Sampling] = []
        # The last prompts' keys/values (one row each), newest last: a newcomer that shares a prefix
        # with one of them (a system prompt, say) prefills only the rest.
        self.prefixes: OrderedDict[tuple[int, ...], list[tuple[Any, Any]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self.sampling)

    def advance(
        self, drop: Sequence[int] = (), admit: Sequence[tuple[list[int], Sampling]] = ()
    ) -> list[int]:
        """Drop the rows at indices ``drop``, decode one token for every remaining row, then prefill
        ``admit`` (prompt ids, sampling) as new rows. Returns the next token of every row in batch
        order: the remaining rows in their order, then the admitted ones."""
        import torch

        with torch.inference_mode():
            self._drop(drop)
            tokens = self._decode() if len(self) else []
            if admit:
                tokens += self._prefill(admit)
        return tokens

    def _drop(self, rows: Sequence[int]) -> None:
        import torch

        if not rows:
            return
        gone = set(rows)
        keep = [r for r in range(len(self)) if r not in gone]
        if not keep:
            self.cache = self.mask = self.positions = self.last = None
            self.sampling = []
            return
        index = torch.tensor(keep, device=self.device)
        self.cache.batch_select_indices(index)
        self.mask, self.positions, self.last = self.mask[index], self.positions[index], self.last[index]
        self.sampling = [self.sampling[r] for r in keep]
        # Columns that are padding in every remaining row (the dropped row was the longest): cut them.
        first_used = int(self.mask.any(dim=0).int().argmax())
        if first_used:
            self.mask = self.mask[:, first_used:]
            for layer in self.cache.layers:
                layer.keys, layer.values = layer.keys[..., first_used:, :], layer.values[..., first_used:, :]

    def _decode(self) -> list[int]:
        import torch

        ones = torch.ones((len(self), 1), dtype=self.mask.dtype, device=self.device)
        self.mask = torch.cat([self.mask, ones], dim=1)
        out = self.model(
            input_ids=self.last[:, None],
            attention_mask=self.mask,
            position_ids=self.positions[:, None],
            past_key_values=self.cache,
            use_cache=True,
        )
        self.cache = out.past_key_values
        self.positions = self.positions + 1
        self.last = self._pick(out.logits[:, -1], self.sampling)
        return list(self.last.tolist())

    def _prefill(self, admit: Sequence[tuple[list[int], Sampling]]) -> list[int]:
        import torch
        from transformers import DynamicCache

        found = [self._cached_prefix(prompt) for prompt, _ in admit]
        reused = max(k for k, _ in found)  # width of the cached part, left-padded per row
        longest = max(len(prompt) - k for (prompt, _), (k, _) in zip(admit, found, strict=True))
        ids = torch.full((len(admit), longest), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(admit), reused + longest), dtype=torch.long)
        for row, ((prompt, _), (k, _)) in enumerate(zip(admit, found, strict=True)):
            rest = prompt[k:]
            ids[row, longest - len(rest) :] = torch.tensor(rest, dtype=torch.long)
            mask[row, reused - k : reused] = 1
            mask[row, reused + longest - len(rest) :] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        cache = DynamicCache()
        if reused:
            donor = next(kv for _, kv in found if kv is not None)
            for layer, (keys, _) in enumerate(donor):
                empty = keys.new_zeros((1, keys.shape[1], 0, keys.shape[3]))
                cache.update(
                    torch.cat([_left_pad(kv[layer][0] if kv else empty, reused, -2) for _, kv in found]),
                    torch.cat([_left_pad(kv[layer][1] if kv else empty, reused, -2) for _, kv in found]),
                    layer,
                )
        prefix_lengths = torch.tensor([k for k, _ in found], device=self.device)
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=prefix_lengths[:, None] + (mask[:, reused:].cumsum(dim=1) - 1).clamp(min=0),
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,  # the lm_head over the vocabulary for the last position only
        )
        for row, (prompt, _) in enumerate(admit):
            self._remember(prompt, out.past_key_values, row, mask[row])
        sampling = [s for _, s in admit]
        first = self._pick(out.logits[:, -1], sampling)
        positions = torch.tensor([len(prompt) for prompt, _ in admit], device=self.device)
        if self.cache is None:
            self.cache, self.mask, self.positions, self.last = out.past_key_values, mask, positions, first
        else:
            width = max(self.mask.shape[1], mask.shape[1])
            for old, new in zip(self.cache.layers, out.past_key_values.layers, strict=True):
                old.keys = torch.cat([_left_pad(old.keys, width, -2), _left_pad(new.keys, width, -2)])
                old.values = torch.cat([_left_pad(old.values, width, -2), _left_pad(new.values, width, -2)])
            self.mask = torch.cat([_left_pad(self.mask, width, -1), _left_pad(mask, width, -1)])
            self.positions = torch.cat([self.positions, positions])
            self.last = torch.cat([self.last, first])
        self.sampling += sampling
        return list(first.tolist())

    def _cached_prefix(self, prompt: list[int]) -> tuple[int, Any]:
        """(k, per-layer keys/values of ``prompt[:k]``) from the longest cached prompt that shares them.

        At least the last prompt token is always computed anew: its logits give the first token."""
        best, donor = 0, None
        for cached in self.prefixes:
            k = 0
            for a, b in zip(cached, prompt[:-1], strict=False):
                if a != b:
                    break
                k += 1
            if k > best:
                best, donor = k, cached
        if donor is None:
            return 0, None
        self.prefixes.move_to_end(donor)  # least recently used goes first
        return best, [(keys[..., :best, :], values[..., :best, :]) for keys, values in self.prefixes[donor]]

    def _remember(self, prompt: list[int], cache: Any, row: int, row_mask: Any) -> None:
        """Keep the keys/values of ``prompt`` (one row, its padding removed) for prompts that share a prefix."""
        key = tuple(prompt)
        self.prefixes.pop(key, None)
        real = row_mask.nonzero().squeeze(1)
        self.prefixes[key] = [
            (layer.keys[row : row + 1, :, real], layer.values[row : row + 1, :, real])
            for layer in cache.layers
        ]
        while len(self.prefixes) > self.max_prefixes:
            self.prefixes.popitem(last=False)

    @staticmethod
    def _pick(logits: Any, sampling: Sequence[Sampling]) -> Any:
        """The next token per row: argmax, or a draw after temperature and top-p for a sampled row."""
        import torch
        from transformers import TopPLogitsWarper

        scores = logits.float()
        chosen = scores.argmax(dim=-1)
        for row, s in enumerate(sampling):
            if s.temperature > 0:
                row_scores = scores[row : row + 1] / s.temperature
                if s.top_p < 1.0:
                    row_scores = TopPLogitsWarper(s.top_p)(None, row_scores)  # type: ignore[arg-type]
                chosen[row] = torch.multinomial(torch.softmax(row_scores, dim=-1), 1)[0, 0]
        return chosen
