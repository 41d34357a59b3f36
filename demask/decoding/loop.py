"""The one denoising loop: :func:`generate`.

For every block of the completion (left to right; one block = full diffusion), each step
is one forward pass (see cache.py for which slice runs), a token choice for the block's
positions (sampling.py), and a policy deciding which masked positions to commit
(policies.py; fixed-budget policies get their count from a schedule, schedules.py).
Committed tokens never change, and the mask token itself is never a candidate value
(its logit is set to -inf: an untrained model may favour it). Rows of a batch decode
independently: a row leaves the batch when it stops early, and a row that has finished
its block sits out the forwards of rows still working on theirs (adaptive policies), so
``nfe`` counts only the forwards a row took part in.

Early stop: once a row has committed an end token (EOS or pad) and every position before
it, its completion (cut at the first end token) can no longer change, so the row stops
and its masked positions are filled with that end token. The cut completion equals that
of decoding to the end given the same steps up to the stop; with sampling, rows leaving
the batch change the random draws of the rows that stay (as any change of batch does).

Not covered: remasking of committed tokens, batches whose rows need different
gen_length, and models on several devices. The model's train/eval mode is left as is.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from demask.decoding.autoregressive import generate_autoregressive
from demask.decoding.batch import build_batch
from demask.decoding.cache import StepForward
from demask.decoding.config import DecodeConfig
from demask.decoding.output import DecodeOutput, cut_completions, end_token_ids
from demask.decoding.policies import StepState, make_policy
from demask.decoding.sampling import choose_tokens
from demask.decoding.schedules import schedule_class
from demask.decoding.trace import Trace, TraceStep


def make_generator(config: DecodeConfig, device: torch.device) -> torch.Generator:
    seed = config.seed
    if seed is None:
        seed = int(torch.randint(0, 2**62, (1,)).item())
    return torch.Generator(device=device).manual_seed(seed)


def early_stopped(comp: torch.Tensor, masked: torch.Tensor, end_ids: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows whose first committed end token has nothing masked before it.

    comp, masked: (A, L). Returns done (A,) bool and first_end (A,) long (L where none).
    """
    length = comp.shape[1]
    idx = torch.arange(length, device=comp.device)
    is_end = torch.isin(comp, end_ids) & ~masked
    first_end = torch.where(is_end, idx, length).min(-1).values
    first_masked = torch.where(masked, idx, length).min(-1).values
    return first_end < first_masked, first_end


@torch.no_grad()
def generate(model: torch.nn.Module, prompts: Sequence[Sequence[int]], config: DecodeConfig,
             generator: torch.Generator | None = None) -> DecodeOutput:
    """Decode a completion of ``config.gen_length`` tokens for every prompt.

    Dispatches on ``model.config.causal``: a causal model decodes autoregressively
    (autoregressive.py). Randomness comes from ``generator`` only (or one seeded from
    ``config.seed``), so a call is repeatable bit for bit on the CPU.
    """
    mcfg = model.config
    device = next(model.parameters()).device
    if generator is None:
        generator = make_generator(config, device)
    if mcfg.causal:
        return generate_autoregressive(model, prompts, config, generator)
    if mcfg.mask_token_id is None:
        raise ValueError("model.config.mask_token_id is None: a masked-diffusion model needs "
                         "its mask token id (set it in config.json or the tokenizer)")
    ends = end_token_ids(mcfg)
    pad_id = mcfg.pad_token_id if mcfg.pad_token_id is not None else (ends or [0])[0]
    batch = build_batch(prompts, config.gen_length, mcfg.mask_token_id, pad_id, device,
                        mcfg.max_position_embeddings)
    policy = make_policy(config)
    schedule = None if policy.adaptive else schedule_class(config.schedule)()
    block_steps = config.block_steps()
    b, p, length, bl = len(prompts), batch.prompt_length, config.gen_length, config.block_size

    mask_id = mcfg.mask_token_id
    # the mask token is never a candidate value (an untrained model may favour it)
    mask_index = torch.tensor([mask_id] if mask_id < mcfg.vocab_size else [], dtype=torch.long,
                              device=device)
    x, pos = batch.tokens, batch.positions  # (A, T) for the A active rows
    attn = batch.attention if batch.has_padding else None  # no mask: the fast SDPA path
    masked = torch.ones(b, length, dtype=torch.bool, device=device)  # (A, L)
    rows = torch.arange(b, device=device)  # batch index of each active row
    nfe = torch.zeros(b, dtype=torch.long, device=device)  # per batch row
    out = x.clone()
    end_t = torch.tensor(ends, dtype=torch.long, device=device)
    check_stop = config.early_stop and len(ends) > 0
    conf_buf = torch.zeros(b, length, device=device) if policy.sees_completion else None
    trace = Trace(b, length) if config.trace else None
    forward = StepForward(model, config.cache, p, p + length)

    for blk in range(config.n_blocks):
        if rows.numel() == 0:
            break
        lo, hi = blk * bl, (blk + 1) * bl
        cap = bl if policy.adaptive else block_steps[blk]
        for step in range(cap):
            sub = None  # rows that still have masked positions in the block (None: all)
            if policy.adaptive and step > 0:
                need = masked[:, lo:hi].any(-1)
                n_need = int(need.sum())  # one sync per step: is the block done?
                if n_need == 0:
                    break
                if n_need < rows.numel():
                    sub = need.nonzero().squeeze(1)
            logits, w0 = forward(x, attn, pos, lo, hi, refresh=step == 0, rows=sub)  # (A', W, V)
            run_rows = rows if sub is None else rows[sub]
            m_run = masked if sub is None else masked[sub]  # (A', L)
            nfe[run_rows] += 1
            block_logits = logits[:, lo - w0:hi - w0].index_fill(-1, mask_index, float("-inf"))
            tokens, probs = choose_tokens(block_logits, config.temperature, config.top_p,
                                          config.top_k, generator)  # (A', S)
            m_blk = m_run[:, lo:hi]
            state = StepState(
                tokens=tokens, probs=probs, masked=m_blk, step=step, nfe=nfe[run_rows],
                gen_length=length, block_start=lo, generator=generator,
                counts=None if schedule is None else schedule.counts(m_blk.sum(-1), step, cap),
                force_all=policy.adaptive and step == cap - 1)
            if conf_buf is not None:
                top1 = logits.float().index_fill(-1, mask_index, float("-inf"))
                top1 = top1.softmax(-1).amax(-1)  # (A', W): untempered top-1 probability
                c_run = conf_buf if sub is None else conf_buf[sub]
                c_run[:, w0:w0 + top1.shape[1]] = top1
                if sub is not None:
                    conf_buf[sub] = c_run
                state.completion_masked, state.completion_confidence = m_run, c_run
            sel = policy.select(state)
            commit = sel.commit & m_blk
            cols = slice(p + lo, p + hi)
            if sub is None:
                x[:, cols] = torch.where(commit, tokens, x[:, cols])
                masked[:, lo:hi] = m_blk & ~commit
            else:
                x[sub, cols] = torch.where(commit, tokens, x[sub, cols])
                masked[sub, lo:hi] = m_blk & ~commit
            if trace is not None:
                trace.record(TraceStep(
                    rows=run_rows.clone(), nfe=nfe[run_rows].clone(), offset=lo, commit=commit,
                    tokens=tokens, scores=sel.scores, confidence=state.confidence, info=sel.info))
            if check_stop:
                done, first_end = early_stopped(x[:, p:], masked, end_t)
                if bool(done.any()):  # one sync per step
                    fill = x[:, p:].gather(1, first_end.clamp(max=length - 1).unsqueeze(1))
                    fill_here = masked & done.unsqueeze(1)
                    x[:, p:] = torch.where(fill_here, fill, x[:, p:])
                    out[rows[done]] = x[done]
                    if trace is not None:
                        trace.record_stop(rows[done].tolist(), first_end[done].tolist())
                    keep = ~done
                    x, pos, masked, rows = x[keep], pos[keep], masked[keep], rows[keep]
                    attn = None if attn is None else attn[keep]
                    conf_buf = None if conf_buf is None else conf_buf[keep]
                    forward.select_rows(keep)
                    if rows.numel() == 0:
                        break
    out[rows] = x
    completions = cut_completions(out[:, p:], ends)
    return DecodeOutput(completions, nfe.tolist(), out, p, trace)
