"""Autoregressive decoding of causal models through the same API as the denoising loop.

One token per step, left to right: a prefill forward over the (left-padded) prompts
predicts the first completion token, then each step feeds the last token against the KV
cache (``cache="none"`` recomputes the whole prefix every step instead: slow, for
checking). Token choice, early stop at an end token, NFE counts and traces behave as in
loop.py; a trace commits position i at step i, so AR-ness is 1 by construction.
Unmasking policies, schedules and blocks do not apply here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from demask.decoding.batch import ActiveRows, build_batch
from demask.decoding.config import DecodeConfig
from demask.decoding.output import DecodeOutput, as_decoding_model, cut_completions, end_token_ids, fill_token_id
from demask.decoding.sampling import choose_tokens
from demask.decoding.trace import Trace, TraceStep


@torch.no_grad()
def generate_autoregressive(
    module: torch.nn.Module,
    prompts: Sequence[Sequence[int]],
    config: DecodeConfig,
    generator: torch.Generator | None,
    on_step: Callable[[TraceStep], None] | None = None,
) -> DecodeOutput:
    model = as_decoding_model(module)
    mcfg = model.config
    if not mcfg.shift_logits:
        raise ValueError(
            "a causal model must predict token i from position i - 1 "
            "(shift_logits=True); this one has shift_logits=False"
        )
    device = next(model.parameters()).device
    ends = end_token_ids(mcfg)
    pad_id = fill_token_id(mcfg, ends)
    batch = build_batch(prompts, config.gen_length, pad_id, pad_id, device, mcfg.max_position_embeddings)
    p, length = batch.prompt_length, config.gen_length
    rows = ActiveRows.start(batch)
    cache = model.new_cache(p + length) if config.cache != "none" else None
    nfe = torch.zeros(len(prompts), dtype=torch.long, device=device)
    out = batch.tokens.clone()
    end_t = torch.tensor(ends, dtype=torch.long, device=device)
    trace = Trace(len(prompts), length) if config.trace else None

    for i in range(length):
        col = p + i  # the position this step commits
        x, attn, pos = rows.tokens, rows.attention, rows.positions
        if cache is None:
            logits = model(
                x[:, :col], attention_mask=None if attn is None else attn[:, :col], position_ids=pos[:, :col]
            )[:, -1]  # (A, V)
        else:
            start = 0 if i == 0 else col - 1  # prefill, then the last committed token
            logits = model(
                x[:, start:col], attention_mask=attn, position_ids=pos[:, start:col], cache=cache, cache_start=start
            )[:, -1]
        tokens, probs = choose_tokens(logits, config.temperature, config.top_p, config.top_k, generator)  # (A,), (A, V)
        x[:, col] = tokens
        nfe[rows.index] += 1
        if trace is not None or on_step is not None:
            conf = probs.gather(-1, tokens[:, None])  # (A, 1)
            record = TraceStep(
                rows=rows.index.clone(),
                nfe=nfe[rows.index].clone(),
                offset=i,
                commit=torch.ones_like(conf, dtype=torch.bool),
                tokens=tokens[:, None],
                scores=conf,
                confidence=conf,
            )
            if trace is not None:
                trace.record(record)
            if on_step is not None:
                on_step(record)
        if config.early_stop and ends and i < length - 1:
            done = torch.isin(tokens, end_t)
            if bool(done.any()):  # one sync per step
                x[done, col + 1 :] = tokens[done, None]
                out[rows.index[done]] = x[done]
                if trace is not None:
                    trace.record_stop(rows.index[done].tolist(), [i] * int(done.sum()))
                if cache is not None:
                    cache.select_rows(~done)
                rows = rows.select(~done)
                if len(rows) == 0:
                    break
    out[rows.index] = rows.tokens
    return DecodeOutput(cut_completions(out[:, p:], ends), nfe.tolist(), out, p, trace)
