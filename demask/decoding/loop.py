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

Block-causal models (``model.config.block_size`` B, block diffusion): the blocks are the
model's (``block_length`` B; left unset it becomes B), completions start on a block boundary
(:func:`demask.model.blocks.align_positions`), and any cache mode other than "none" is the
**exact** cache: a finished block's keys/values are written once, by the forward that starts
the next block, and never recomputed; each step runs only the current block. The result
equals that of ``cache="none"`` (the whole sequence every step under the block-causal mask).

Not covered: remasking of committed tokens, batches whose rows need different
gen_length, sub-blocks inside a block-causal model's block, and models on several devices.
The model's train/eval mode is left as is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from demask.decoding.autoregressive import generate_autoregressive
from demask.decoding.batch import ActiveRows, build_batch
from demask.decoding.cache import StepForward
from demask.decoding.config import DecodeConfig
from demask.decoding.output import DecodeOutput, as_decoding_model, cut_completions, end_token_ids, fill_token_id
from demask.decoding.policies import StepState, UnmaskingPolicy
from demask.decoding.sampling import choose_tokens
from demask.decoding.schedules import Schedule, schedule_class
from demask.decoding.trace import Trace, TraceStep
from demask.model.blocks import align_positions
from demask.model.config import ModelConfig


def seeded_generator(config: DecodeConfig, device: torch.device) -> torch.Generator:
    """A generator seeded from ``config.seed`` (or, when None, from torch's global generator)."""
    seed = config.seed
    if seed is None:
        seed = int(torch.randint(0, 2**62, (1,)).item())
    return torch.Generator(device=device).manual_seed(seed)


@torch.no_grad()
def generate(
    model: torch.nn.Module,
    prompts: Sequence[Sequence[int]],
    config: DecodeConfig,
    generator: torch.Generator | None = None,
    on_step: Callable[[TraceStep], None] | None = None,
    suffixes: Sequence[Sequence[int]] | None = None,
) -> DecodeOutput:
    """Decode a completion of ``config.gen_length`` tokens for every prompt.

    Dispatches on ``model.config.causal``: a causal model decodes autoregressively
    (autoregressive.py). Randomness comes from ``generator`` only (or one seeded from
    ``config.seed``), so a call is repeatable bit for bit on the CPU.

    on_step: called after every forward pass with what it committed (a :class:`TraceStep`:
        the rows that took part, the committed positions and their tokens), to stream the
        denoising as it happens; it must not modify the tensors.
    suffixes: fill-in-the-middle: one token list per prompt that follows the completion (the
        model sees it; the completion is the middle, exactly ``gen_length`` tokens: end tokens
        are never chosen and nothing stops early). Full-attention diffusion models only.
    """
    mcfg = as_decoding_model(model).config
    device = next(model.parameters()).device
    generator = seeded_generator(config, device) if generator is None else generator
    if suffixes is not None and (mcfg.causal or mcfg.block_size is not None):
        kind = "an autoregressive" if mcfg.causal else "a block-causal"
        raise ValueError(
            f"fill-in-the-middle needs a model that sees the suffix; {kind} model never attends to later "
            "tokens: use a full-attention diffusion model (tinycode-mdm), or generate from the prefix alone"
        )
    if mcfg.causal:
        return generate_autoregressive(model, prompts, config, generator, on_step)
    mask_id = _mask_token_id(mcfg)
    ends = end_token_ids(mcfg)
    batch = build_batch(
        prompts, config.gen_length, mask_id, fill_token_id(mcfg, ends), device, mcfg.max_position_embeddings,
        suffixes=suffixes,
    )  # fmt: skip
    if suffixes is not None:  # the middle has exactly gen_length tokens: no end token, no early stop
        config = config.replace(early_stop=False)
    if mcfg.block_size is not None:
        config = block_causal_config(config, mcfg.block_size)
        batch.positions = align_positions(batch.positions, batch.prompt_length, mcfg.block_size)
    policy = config.make_policy()
    rows = ActiveRows.start(batch, confidence=policy.sees_completion, length=config.gen_length)
    p, length, bl = batch.prompt_length, config.gen_length, config.block_size
    run = _Run(
        config=config,
        policy=policy,
        schedule=None if policy.adaptive else schedule_class(config.schedule)(),
        forward=StepForward(model, config.cache, p, p + length, batch.tokens.shape[1]),
        generator=generator,
        banned=torch.tensor(
            [i for i in [mask_id, *(ends if suffixes is not None else [])] if i < mcfg.vocab_size],
            dtype=torch.long,
            device=device,
        ),
        nfe=torch.zeros(len(prompts), dtype=torch.long, device=device),  # per batch row
        trace=Trace(len(prompts), length) if config.trace else None,
        on_step=on_step,
    )
    out = batch.tokens.clone()
    end_t = torch.tensor(ends, dtype=torch.long, device=device)

    for blk, steps in enumerate(config.block_steps() or [bl] * config.n_blocks):
        for step in range(steps):  # adaptive policies: at most one step per position
            if not run.step(rows, blk * bl, (blk + 1) * bl, step, steps):
                break  # every row has committed the whole block (or stopped early)
            if config.early_stop and ends:
                rows = _retire_finished(rows, out, p, end_t, run.forward, run.trace)
    out[rows.index] = rows.tokens
    return DecodeOutput(cut_completions(out[:, p : p + length], ends), run.nfe.tolist(), out, p, run.trace)


@dataclass
class _Run:
    """What every step of one generate() call shares."""

    config: DecodeConfig
    policy: UnmaskingPolicy
    schedule: Schedule | None
    """The fixed-budget policies' split of a block's steps (None for adaptive policies)."""
    forward: StepForward
    generator: torch.Generator
    banned: torch.Tensor
    """Token ids never chosen as a value (the mask token)."""
    nfe: torch.Tensor
    """(B,) long: forward passes each batch row took part in."""
    trace: Trace | None
    on_step: Callable[[TraceStep], None] | None = None

    def step(self, rows: ActiveRows, lo: int, hi: int, step: int, steps: int) -> bool:
        """One forward pass over the rows still working on block [lo, hi), a token choice and
        the policy's commits, written into ``rows``. False (and nothing run) when no row has
        anything left to commit in the block."""
        run = _rows_still_working(self.policy, rows, lo, hi, step)  # None: every row
        if run is not None and run.numel() == 0:
            return False
        sub = rows if run is None else rows.select(run)
        logits, w0 = self.forward(sub, lo, hi, refresh=step == 0, run=run)  # (A', W, V)
        self.nfe[sub.index] += 1
        cfg = self.config
        block_logits = logits[:, lo - w0 : hi - w0].index_fill(-1, self.banned, float("-inf"))
        tokens, probs = choose_tokens(block_logits, cfg.temperature, cfg.top_p, cfg.top_k, self.generator)  # (A', S)
        masked = sub.masked[:, lo:hi]
        state = StepState(tokens=tokens, probs=probs, masked=masked, step=step, nfe=self.nfe[sub.index],
                          gen_length=cfg.gen_length, block_start=lo, generator=self.generator)  # fmt: skip
        state.counts = None if self.schedule is None else self.schedule.counts(masked.sum(-1), step, steps)
        state.force_all = self.policy.adaptive and step == steps - 1
        if self.policy.sees_completion:
            _see_completion(state, rows, sub, run, logits, w0, self.banned)
        sel = self.policy.select(state)
        commit = sel.commit & state.masked
        _commit(rows, run, commit, tokens, self.forward.p, lo, hi)
        if self.trace is not None or self.on_step is not None:
            record = TraceStep(
                rows=sub.index.clone(),
                nfe=self.nfe[sub.index].clone(),
                offset=lo,
                commit=commit,
                tokens=tokens,
                scores=sel.scores,
                confidence=state.confidence,
                info=sel.info,
            )
            if self.trace is not None:
                self.trace.record(record)
            if self.on_step is not None:
                self.on_step(record)
        return True


def block_causal_config(config: DecodeConfig, block_size: int) -> DecodeConfig:
    """``config`` for a block-causal model of ``block_size``: its blocks are the model's."""
    if config.gen_length % block_size:
        raise ValueError(
            f"gen_length={config.gen_length} is not a whole number of the model's blocks of {block_size}; "
            f"use a multiple of {block_size} (the completion stops early at its end token anyway)"
        )
    if config.block_length is None:
        return config.replace(block_length=block_size)
    if config.block_length != block_size:
        raise ValueError(
            f"block_length={config.block_length}, but the model is block-causal with blocks of {block_size}: "
            f"decode with block_length {block_size} (or leave it unset)"
        )
    return config


def _mask_token_id(mcfg: ModelConfig) -> int:
    """The mask token: it fills the completion and is never a candidate value (its logit is
    -inf; an untrained model may favour it)."""
    if mcfg.mask_token_id is None:
        raise ValueError(
            "model.config.mask_token_id is None: a masked-diffusion model needs "
            "its mask token id (set it in config.json or the tokenizer)"
        )
    return mcfg.mask_token_id


def _rows_still_working(policy: UnmaskingPolicy, rows: ActiveRows, lo: int, hi: int, step: int) -> torch.Tensor | None:
    """Indices of the rows with masked positions left in the block (None: all of them;
    empty once every row has stopped early). Only adaptive policies finish rows at
    different steps; one sync per step."""
    if len(rows) == 0:
        return rows.index
    if not policy.adaptive or step == 0:
        return None
    need = rows.masked[:, lo:hi].any(-1)
    n_need = int(need.sum())
    return None if n_need == len(rows) else need.nonzero().squeeze(1)


def _see_completion(
    state: StepState,
    rows: ActiveRows,
    sub: ActiveRows,
    run: torch.Tensor | None,
    logits: torch.Tensor,
    w0: int,
    banned: torch.Tensor,
) -> None:
    """Refresh the running rows' whole-completion confidence and hand it to the policy."""
    top1 = logits.float().index_fill(-1, banned, float("-inf"))
    top1 = top1.softmax(-1).amax(-1)  # (A', W): untempered top-1 probability
    sub.confidence[:, w0 : w0 + top1.shape[1]] = top1
    if run is not None:
        rows.confidence[run] = sub.confidence
    state.completion_masked, state.completion_confidence = sub.masked, sub.confidence


def _commit(
    rows: ActiveRows, run: torch.Tensor | None, commit: torch.Tensor, tokens: torch.Tensor, p: int, lo: int, hi: int
) -> None:
    """Write the committed tokens of the running rows into ``rows`` and unmask them."""
    at = slice(None) if run is None else run
    cols = slice(p + lo, p + hi)
    rows.tokens[at, cols] = torch.where(commit, tokens, rows.tokens[at, cols])
    rows.masked[at, lo:hi] = rows.masked[at, lo:hi] & ~commit


def early_stopped(comp: torch.Tensor, masked: torch.Tensor, end_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows whose first committed end token has nothing masked before it.

    comp, masked: (A, L). Returns done (A,) bool and first_end (A,) long (L where none).
    """
    length = comp.shape[1]
    idx = torch.arange(length, device=comp.device)
    is_end = torch.isin(comp, end_ids) & ~masked
    first_end = torch.where(is_end, idx, length).min(-1).values
    first_masked = torch.where(masked, idx, length).min(-1).values
    return first_end < first_masked, first_end


def _retire_finished(
    rows: ActiveRows, out: torch.Tensor, p: int, end_t: torch.Tensor, forward: StepForward, trace: Trace | None
) -> ActiveRows:
    """Fill the finished rows' masked positions with their end token, copy them to ``out``
    and drop them from the batch (and the cache). One sync per step."""
    comp = rows.tokens[:, p:]
    done, first_end = early_stopped(comp, rows.masked, end_t)
    if not bool(done.any()):
        return rows
    length = comp.shape[1]
    fill = comp.gather(1, first_end.clamp(max=length - 1).unsqueeze(1))
    rows.tokens[:, p:] = torch.where(rows.masked & done.unsqueeze(1), fill, comp)
    out[rows.index[done]] = rows.tokens[done]
    if trace is not None:
        trace.record_stop(rows.index[done].tolist(), first_end[done].tolist())
    keep = ~done
    forward.select_rows(keep)
    return rows.select(keep)
