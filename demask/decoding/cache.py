"""One step's forward pass under a cache mode: which slice runs, and which logits come back.

Modes (Fast-dLLM; the cache is refreshed by one full forward at the start of each block,
which is also that step's prediction):

- ``none``: the whole sequence every step (the plain loop).
- ``prefix``: later steps run [block start, end of sequence) against the keys/values of
  everything left of the block, as computed at the block's refresh (a suffix after the
  completion, fill-in-the-middle, runs with it).
- ``dual``: later steps run only the block; the keys/values both left and right of it
  (the masked suffix) come from the refresh.

For a shifted model the prediction for token a sits at position a - 1, so a slice that
must predict [a, b) runs from a - 1 (re-writing the K/V of a - 1 is harmless: the refresh
computed it from the same committed token). Whatever runs, the caller gets logits aligned
with completion positions: ``logits[:, j]`` predicts completion index ``window_start + j``.

What is approximate: with ``prefix``/``dual``, K/V outside the running slice are those of
the refresh, not of the current tokens, so outputs may differ from ``none`` (Fast-dLLM's
trade). Rows that still decode while others wait run against a gathered copy of the cache.

A block-causal model (block diffusion) has nothing to approximate: no block sees a later
one, so ``prefix`` and ``dual`` both mean the **exact** cache. Each step runs the current
attention block only; the step that starts a block also runs the block before it once more,
now that its tokens are final, which writes its keys/values for good (the first block's
start runs the whole prompt instead: the prefill).
"""

from __future__ import annotations

import torch

from demask.decoding.batch import ActiveRows
from demask.decoding.output import as_decoding_model


class StepForward:
    """Runs the model for one decoding step of block decoding."""

    def __init__(
        self,
        model: torch.nn.Module,
        mode: str,
        prompt_length: int,
        total_length: int,
        sequence_length: int | None = None,
    ) -> None:
        """[prompt_length, total_length): the completion; sequence_length (default total_length):
        the whole row, longer when a suffix follows the completion (fill-in-the-middle)."""
        self.model, self.mode = as_decoding_model(model), mode
        self.shifted = bool(self.model.config.shift_logits)
        self.p, self.t = prompt_length, total_length
        self.cache = self.model.new_cache(sequence_length or total_length) if mode != "none" else None
        self.exact = self.cache is not None and self.model.config.block_size is not None

    def __call__(
        self, rows: ActiveRows, lo: int, hi: int, refresh: bool, run: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, int]:
        """Logits (A', W, V) for completion indices [window_start, ...) and window_start.

        rows: the rows to run (A'); run: their indices among the cache's rows when they are
        a subset (None: all of them; a refresh always runs all). [lo, hi): the current block
        in completion indices.
        """
        x, attn, pos = rows.tokens, rows.attention, rows.positions
        p, shift = self.p, int(self.shifted)
        if self.exact:
            return self._exact(rows, lo, hi, refresh, run), lo
        if self.cache is None or refresh:
            if refresh and run is not None:
                raise RuntimeError("a cache refresh must run every active row")
            logits = self.model(x, attention_mask=attn, position_ids=pos, cache=self.cache, cache_start=0)  # (A, T, V)
            return logits[:, p - shift : self.t - shift], 0
        cache = self.cache if run is None else self.cache.gather(run)  # every position a
        # step writes in the copy is re-written by the next step or the next refresh
        a = p + lo - shift  # first absolute position to run
        b = x.shape[1] if self.mode == "prefix" else p + hi  # prefix: to the end, a suffix included
        logits = self.model(
            x[:, a:b], attention_mask=attn, position_ids=pos[:, a:b], cache=cache, cache_start=a
        )  # (A', b - a, V)
        # Row j of the slice predicts absolute position a + j + shift = p + lo + j; keep the
        # rows that predict completion positions (not a suffix's).
        return logits[:, : min(b, self.t) - a - shift], lo

    def _exact(self, rows: ActiveRows, lo: int, hi: int, refresh: bool, run: torch.Tensor | None) -> torch.Tensor:
        """Block-causal models: logits (A', hi - lo, V) for completion [lo, hi), running the
        attention block [a, b) that predicts it (plus the finished block before it, or the
        whole prompt, on a refresh)."""
        if refresh and run is not None:
            raise RuntimeError("a cache refresh must run every active row")
        assert self.cache is not None  # exact mode has a cache
        a, b = self.p + lo - int(self.shifted), self.p + hi - int(self.shifted)
        start = a if not refresh else 0 if lo == 0 else a - (hi - lo)
        cache = self.cache if run is None else self.cache.gather(run)
        logits = self.model(
            rows.tokens[:, start:b],
            attention_mask=rows.attention,
            position_ids=rows.positions[:, start:b],
            cache=cache,
            cache_start=start,
        )
        return logits[:, a - start :]

    def select_rows(self, keep: torch.Tensor) -> None:
        """Drop finished rows from the cache (keep: (A,) bool or indices)."""
        if self.cache is not None:
            self.cache.select_rows(keep)
