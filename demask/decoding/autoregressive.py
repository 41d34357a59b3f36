"""Autoregressive decoding of causal models through the same API as the denoising loop.

One token per step, left to right: a prefill forward over the (left-padded) prompts
predicts the first completion token, then each step feeds the last token against the KV
cache (``cache="none"`` recomputes the whole prefix every step instead: slow, for
checking). Token choice, early stop at an end token, NFE counts and traces behave as in
loop.py; a trace commits position i at step i, so AR-ness is 1 by construction.
Unmasking policies, schedules and blocks do not apply here.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from demask.decoding.batch import build_batch
from demask.decoding.config import DecodeConfig
from demask.decoding.output import DecodeOutput, cut_completions, end_token_ids
from demask.decoding.sampling import choose_tokens
from demask.decoding.trace import Trace, TraceStep


@torch.no_grad()
def generate_autoregressive(model: torch.nn.Module, prompts: Sequence[Sequence[int]],
                            config: DecodeConfig, generator: torch.Generator | None) -> DecodeOutput:
    mcfg = model.config
    if not mcfg.shift_logits:
        raise ValueError("a causal model must predict token i from position i - 1 "
                         "(shift_logits=True); this one has shift_logits=False")
    device = next(model.parameters()).device
    ends = end_token_ids(mcfg)
    pad_id = mcfg.pad_token_id if mcfg.pad_token_id is not None else (ends or [0])[0]
    batch = build_batch(prompts, config.gen_length, pad_id, pad_id, device,
                        mcfg.max_position_embeddings)
    b, p, length = len(prompts), batch.prompt_length, config.gen_length
    x, pos = batch.tokens, batch.positions
    attn = batch.attention if batch.has_padding else None
    cache = model.new_cache(p + length) if config.cache != "none" else None
    rows = torch.arange(b, device=device)
    nfe = torch.zeros(b, dtype=torch.long, device=device)
    out = x.clone()
    end_t = torch.tensor(ends, dtype=torch.long, device=device)
    check_stop = config.early_stop and len(ends) > 0
    trace = Trace(b, length) if config.trace else None

    for i in range(length):
        col = p + i  # the position this step commits
        if cache is None:
            logits = model(x[:, :col], attention_mask=None if attn is None else attn[:, :col],
                           position_ids=pos[:, :col])[:, -1]  # (A, V)
        else:
            start = 0 if i == 0 else col - 1  # prefill, then the last committed token
            logits = model(x[:, start:col], attention_mask=attn, position_ids=pos[:, start:col],
                           cache=cache, cache_start=start)[:, -1]
        tokens, probs = choose_tokens(logits, config.temperature, config.top_p, config.top_k,
                                      generator)  # (A,), (A, V)
        x[:, col] = tokens
        nfe[rows] += 1
        if trace is not None:
            conf = probs.gather(-1, tokens[:, None])  # (A, 1)
            trace.record(TraceStep(rows=rows.clone(), nfe=nfe[rows].clone(), offset=i,
                                   commit=torch.ones_like(conf, dtype=torch.bool),
                                   tokens=tokens[:, None], scores=conf, confidence=conf))
        if check_stop and i < length - 1:
            done = torch.isin(tokens, end_t)
            if bool(done.any()):  # one sync per step
                x[done, col + 1:] = tokens[done, None]
                out[rows[done]] = x[done]
                if trace is not None:
                    trace.record_stop(rows[done].tolist(), [i] * int(done.sum()))
                keep = ~done
                x, pos, rows = x[keep], pos[keep], rows[keep]
                attn = None if attn is None else attn[keep]
                if cache is not None:
                    cache.select_rows(keep)
                if rows.numel() == 0:
                    break
    out[rows] = x
    return DecodeOutput(cut_completions(out[:, p:], ends), nfe.tolist(), out, p, trace)
