"""Training objectives: the masked-diffusion ELBO and next-token cross-entropy.

Both are pure functions of (model, batch, noise) with the noise passed in, so a test can
fix it and compute the loss by hand; the registered :class:`Objective` classes add only
how the noise is drawn. The training loop knows objectives by name only.

Masked diffusion (LLaDA eq. 3; MDLM; DiffuCoder's SFT): for every row draw
t ~ U(eps, 1), mask each target position independently with probability t, and score
the masked positions::

    loss_row = (1 / t) * sum_{i masked} -log p(x_i | x_t)  /  L_row

The normaliser L_row is the number of target positions of the row (the fixed completion
length for SFT, the chunk length for pretraining), not the number of masked ones: with it
the loss is an upper bound on -log p(x) / L_row, averaged over rows. This is LLaDA's SFT
normaliser (answer length per row, then the batch mean); it makes every row weigh the same
whatever its mask rate. For SFT only completion positions are masked and counted (the
prompt is always clean: conditional masking) and the pad fill after the end token is a
target like any other token.

Next token (autoregressive, for a causal model of the same backbone): cross-entropy of
every target token given the clean prefix, except the pad fill after the end token (the
end token itself is a target); the sum is divided by the same L_row, so both losses read
as nats per completion slot and can be compared.

Shifted models (Dream, DiffuCoder, every causal model) predict token i from position
i-1 (:func:`demask.model.token_logits` aligns them); their position 0 is never a target,
since nothing predicts it. Unshifted models (LLaDA) predict token i at position i.

Block diffusion (BD3-LM's vectorised form; a block-causal model, ``block_size`` B): the
completion is cut into blocks of B tokens from its first position; every block draws its own
mask rate t_k and is scored given the *clean* blocks before it. One forward runs the noised
sequence and the clean one side by side (2W tokens, the same rotary positions twice) under
:func:`demask.model.blocks.two_stream_mask`, so every block reads its clean prefix as a
decoder's exact cache would hold it::

    loss_row = sum_k (1 / t_k) * sum_{i in block k masked} -log p(x_i | x_t[block k], x_0[< k])  /  L_row

For a shifted model the attention block of target block k starts one position early (the
last token of block k - 1, clean, predicts the first token of block k; see blocks.py), so a
masked token that ends its block is scored but never hidden from the positions that read it:
only the next block reads it, and there it is context. ``complementary`` (Fast-dLLM v2)
scores every row twice, under a mask and under its complement (t -> 1 - t), so every target
token is predicted once per row.

Not covered: time-dependent weights other than 1/t (MDLM's general alpha_t schedules),
prompt masking (d1's p_mask_prompt).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from demask.model import ModelConfig, token_logits
from demask.model.blocks import align_positions, attention_blocks, two_stream_mask
from demask.registry import Registry
from demask.training.data import Batch

Model = Callable[..., torch.Tensor]  # model(input_ids, attention_mask) -> logits (B, S, V)


@dataclass
class LossOutput:
    """loss: the scalar to minimise (mean of ``per_row``); n_targets: tokens scored."""

    loss: torch.Tensor
    per_row: torch.Tensor
    n_targets: torch.Tensor


def scored_positions(batch: Batch, shifted: bool) -> torch.Tensor:
    """(B, S) bool: the batch's targets, without position 0 for a shifted model."""
    targets = batch.target_mask
    if shifted:
        targets = targets.clone()
        targets[:, 0] = False
    return targets


def token_cross_entropy(logits: torch.Tensor, tokens: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """-log softmax(logits)[token] at the positions ``where``, 0 elsewhere. (B, S, V) -> (B, S).

    Only the selected rows are normalised (in float32), which also keeps bf16 logits exact
    enough for the loss.
    """
    ce = torch.zeros(tokens.shape, dtype=torch.float32, device=tokens.device)
    ce[where] = F.cross_entropy(logits[where].float(), tokens[where], reduction="none")
    return ce


def masked_diffusion_loss(
    model: Model,
    batch: Batch,
    t: torch.Tensor,
    u: torch.Tensor,
    *,
    mask_token_id: int,
    shifted: bool,
    visible: float = 1.0,
    keys: torch.Tensor | None = None,
    span: torch.Tensor | None = None,
) -> LossOutput:
    """The masked-diffusion ELBO with the noise given.

    t: (B,) mask rates in (0, 1]; u: (B, S) uniforms, position i of row b is masked when
    it is a target and u[b, i] < t[b]. Attention annealing (``visible`` < 1): a query sees
    the keys at or before it and each later key whose uniform ``keys`` (B, S, S) is below
    ``visible``. ``span`` (B, S) bool (fill-in-the-middle training): a row with any True
    there has only those targets (a middle; the targets around it stay visible), so its
    loss is the ELBO of the middle given prefix and suffix (rows whose ``span`` is all False
    keep every target).
    """
    targets = scored_positions(batch, shifted)  # (B, S)
    if span is not None:
        targets = torch.where(span.any(1, keepdim=True), targets & span, targets)
    masked = targets & (u < t[:, None])  # (B, S)
    noisy = torch.where(masked, torch.full_like(batch.input_ids, mask_token_id), batch.input_ids)
    if visible < 1.0:
        assert keys is not None, "annealing needs the keys' uniforms"
        logits = token_logits(_annealed_forward(model, batch, noisy, visible, keys), shifted)
    else:
        logits = token_logits(model(noisy, batch.attention_mask), shifted)  # (B, S, V)
    ce = token_cross_entropy(logits, batch.input_ids, masked)  # (B, S)
    length = targets.sum(1).clamp(min=1)  # (B,) L_row
    per_row = ce.sum(1) / (t.float() * length)
    return LossOutput(per_row.mean(), per_row, masked.sum())


def _annealed_forward(
    model: Model, batch: Batch, noisy: torch.Tensor, visible: float, keys: torch.Tensor
) -> torch.Tensor:
    """The forward under DiffuLLaMA's annealed mask: causal plus a random ``visible``
    fraction of the later keys (and never padding)."""
    width = batch.width
    index = torch.arange(width, device=noisy.device)
    keep = (index[None, :] <= index[:, None]) | (keys < visible)  # (B, S, S)
    if batch.attention_mask is not None:
        keep = keep & batch.attention_mask[:, None, :]
    keep = keep | torch.eye(width, dtype=torch.bool, device=noisy.device)
    return model(noisy, attention_mask=keep[:, None], position_ids=batch.positions())


def completion_start(batch: Batch, block_size: int) -> int:
    """The first target column of the batch (targets are right-aligned); the width from there
    must be whole blocks."""
    cols = batch.target_mask.any(0)
    if not bool(cols.any()):
        raise ValueError("the batch has no target positions")
    start = int(cols.int().argmax())
    if (batch.width - start) % block_size:
        raise ValueError(
            f"the completion ({batch.width - start} positions) is not a whole number of blocks of "
            f"block_size={block_size}; set data.completion_length to a multiple of {block_size}"
        )
    return start


def block_positions(batch: Batch, block_size: int) -> torch.Tensor:
    """(B, S) rotary positions of a batch with its completion starting on a block boundary."""
    return align_positions(batch.positions(), completion_start(batch, block_size), block_size)


def block_diffusion_loss(
    model: Model,
    batch: Batch,
    t: torch.Tensor,
    u: torch.Tensor,
    *,
    mask_token_id: int,
    shifted: bool,
    block_size: int,
) -> LossOutput:
    """The block-diffusion ELBO with the noise given (the two-stream form, see the module doc).

    t: (B, S) the mask rate of each position's block (constant over a block); u: (B, S)
    uniforms, a target is masked when u < t.
    """
    targets = scored_positions(batch, shifted)  # (B, S)
    masked = targets & (u < t)
    positions = block_positions(batch, block_size)
    blocks = attention_blocks(positions, block_size, shifted)
    # A masked token is hidden where its own block reads it; the last token of a block
    # (shifted models) is read only by the next block, which sees it clean.
    hidden = masked & (blocks == torch.div(positions, block_size, rounding_mode="floor"))
    noisy = torch.where(hidden, torch.full_like(batch.input_ids, mask_token_id), batch.input_ids)
    both = torch.cat([noisy, batch.input_ids], dim=1)  # (B, 2S)
    logits = model(
        both,
        attention_mask=two_stream_mask(blocks, batch.attention_mask),
        position_ids=torch.cat([positions, positions], dim=1),
    )[:, : batch.width]  # the noised stream's logits
    ce = token_cross_entropy(token_logits(logits, shifted), batch.input_ids, masked)  # (B, S)
    length = targets.sum(1).clamp(min=1)
    per_row = (ce / t.float()).sum(1) / length
    return LossOutput(per_row.mean(), per_row, masked.sum())


def autoregressive_loss(model: Model, batch: Batch) -> LossOutput:
    """Next-token cross-entropy on the targets up to and including the end token."""
    slots = scored_positions(batch, shifted=True)  # (B, S)
    targets = slots & ~batch.fill_mask
    logits = token_logits(model(batch.input_ids, batch.attention_mask), True)  # (B, S, V)
    ce = token_cross_entropy(logits, batch.input_ids, targets)
    per_row = ce.sum(1) / slots.sum(1).clamp(min=1)
    return LossOutput(per_row.mean(), per_row, targets.sum())


# ---------------------------------------------------------------------------- registry
class Objective(ABC):
    """A loss plus the noise it needs. ``draw_noise`` returns tensors whose first dimension
    is the row; 2-D ones are drawn at the data set's full width and right-aligned to a
    batch (targets always sit at the right end of a row), so a row gets the same noise
    whichever micro-batch or process it lands in."""

    name: str

    def __init__(self, config: ModelConfig, mask_eps: float = 1e-3) -> None:
        self.config = config
        self.mask_eps = mask_eps

    def draw_noise(self, rows: int, width: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return {}

    def at_step(self, step: int) -> None:  # noqa: B027 (a hook: most objectives need none)
        """Called by the training loop before update ``step`` (0-based, resumed runs
        included), for objectives that change over the run."""

    @abstractmethod
    def __call__(self, model: Model, batch: Batch, noise: dict[str, torch.Tensor]) -> LossOutput: ...


OBJECTIVES: Registry[type[Objective]] = Registry("objective", base=Objective)


@OBJECTIVES.register("masked-diffusion", "mdm", "diffusion", "elbo")
class MaskedDiffusion(Objective):
    """The masked-diffusion ELBO; t ~ U(mask_eps, 1] per row, u ~ U[0, 1) per position.

    ``anneal_steps`` N > 0 (DiffuLLaMA's attention-mask annealing, for a model adapted from
    an autoregressive one): at update s < N each query sees the keys up to itself and a
    random fraction s / N of the later ones (a fresh draw per query and key), so attention
    opens from causal to bidirectional over the first N updates instead of at once.
    """

    def __init__(
        self, config: ModelConfig, mask_eps: float = 1e-3, anneal_steps: int = 0, infill_rate: float = 0.0
    ) -> None:
        super().__init__(config, mask_eps)
        if anneal_steps < 0:
            raise ValueError(f"anneal_steps must be >= 0 (0 = no annealing), got {anneal_steps}")
        if not 0.0 <= infill_rate <= 1.0:
            raise ValueError(f"infill_rate must lie in [0, 1] (a fraction of the rows), got {infill_rate}")
        self.infill_rate = infill_rate
        self.anneal_steps, self.visible = anneal_steps, 1.0 if anneal_steps == 0 else 0.0
        if config.causal:
            raise ValueError(
                "the masked-diffusion objective needs a bidirectional model, but "
                "model.causal is true; set causal: false or use objective 'autoregressive'"
            )
        if config.block_size is not None:
            raise ValueError(
                f"the model is block-causal (block_size={config.block_size}); train it with objective "
                "'block-diffusion' (earlier blocks clean), or drop block_size for full-attention masked diffusion"
            )
        if config.mask_token_id is None:
            raise ValueError(
                "the masked-diffusion objective needs model.config.mask_token_id; "
                "set it from the tokenizer's mask token"
            )
        if not 0.0 <= mask_eps < 1.0:
            raise ValueError(f"mask_eps must lie in [0, 1), got {mask_eps}")

    def draw_noise(self, rows: int, width: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        # 1 - U[0, 1) lies in (0, 1], so t lies in (eps, 1] and is never 0 (1/t weight).
        unit = 1.0 - torch.rand(rows, generator=generator, device=generator.device)
        t = self.mask_eps + (1.0 - self.mask_eps) * unit
        u = torch.rand(rows, width, generator=generator, device=generator.device)
        noise = {"t": t, "u": u}
        if self.visible < 1.0:
            noise["keys"] = torch.rand(rows, width, width, generator=generator, device=generator.device)
        if self.infill_rate > 0:  # which rows learn a middle, and where it starts and ends
            noise["span"] = torch.rand(rows, 3, generator=generator, device=generator.device)
        return noise

    def at_step(self, step: int) -> None:
        if self.anneal_steps:
            self.visible = min(1.0, step / self.anneal_steps)

    def __call__(self, model: Model, batch: Batch, noise: dict[str, torch.Tensor]) -> LossOutput:
        device, cut = batch.input_ids.device, noise["u"].shape[1] - batch.width
        keys = noise.get("keys")
        assert self.config.mask_token_id is not None  # checked in __init__
        span = None
        if "span" in noise:  # a middle is code: never the end token or the pad filling after it
            content = scored_positions(batch, self.config.shift_logits) & ~batch.fill_mask
            if self.config.eos_token_id is not None:
                content &= batch.input_ids != self.config.eos_token_id
            span = middle_spans(content, noise["span"].to(device), self.infill_rate)
        return masked_diffusion_loss(
            model,
            batch,
            noise["t"].to(device),
            noise["u"][:, cut:].to(device),
            mask_token_id=self.config.mask_token_id,
            shifted=self.config.shift_logits,
            visible=self.visible if keys is not None else 1.0,
            keys=None if keys is None else keys[:, cut:, cut:].to(device),
            span=span,
        )


def middle_spans(targets: torch.Tensor, draws: torch.Tensor, rate: float) -> torch.Tensor:
    """(B, S) bool: for the rows whose first draw is below ``rate``, a contiguous run of their
    targets (start uniform over the targets, length uniform from 1 to what is left); all
    False for the others. draws: (B, 3) uniforms.

    >>> t = torch.tensor([[False, True, True, True, True]] * 2)
    >>> middle_spans(t, torch.tensor([[0.1, 0.5, 0.0], [0.9, 0.5, 0.0]]), 0.5).int().tolist()
    [[0, 0, 0, 1, 0], [0, 0, 0, 0, 0]]
    """
    rank = targets.long().cumsum(1) - 1  # (B, S) index among the row's targets
    n = targets.sum(1)  # (B,)
    start = (draws[:, 1] * n).floor().long().clamp(max=(n - 1).clamp(min=0))
    length = 1 + (draws[:, 2] * (n - start)).floor().long()
    inside = (rank >= start[:, None]) & (rank < (start + length)[:, None]) & targets
    return inside & (draws[:, 0] < rate)[:, None]


@OBJECTIVES.register("block-diffusion", "bd3lm", "block")
class BlockDiffusion(Objective):
    """The block-diffusion ELBO of a block-causal model: one mask rate per block,
    t_k ~ U(mask_eps, 1], u ~ U[0, 1) per position; ``complementary`` adds each row's
    complementary mask (rates 1 - t_k), doubling the forward."""

    def __init__(self, config: ModelConfig, mask_eps: float = 1e-3, complementary: bool = False) -> None:
        super().__init__(config, mask_eps)
        if config.block_size is None or config.mask_token_id is None:
            raise ValueError(
                "the block-diffusion objective needs a block-causal model with a mask token, got "
                f"block_size={config.block_size}, mask_token_id={config.mask_token_id}; set model.block_size "
                "(model.attention: block-causal on a checkpoint) or use objective 'masked-diffusion'"
            )
        if not 0.0 <= mask_eps < 1.0:
            raise ValueError(f"mask_eps must lie in [0, 1), got {mask_eps}")
        self.block_size, self.mask_token_id, self.complementary = config.block_size, config.mask_token_id, complementary

    def draw_noise(self, rows: int, width: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        # Blocks counted from the right end (completions are right-aligned whole blocks).
        n_blocks = -(-width // self.block_size)
        unit = 1.0 - torch.rand(rows, n_blocks, generator=generator, device=generator.device)
        t = self.mask_eps + (1.0 - self.mask_eps) * unit
        u = torch.rand(rows, width, generator=generator, device=generator.device)
        return {"t": t, "u": u}

    def position_rates(self, t_blocks: torch.Tensor, width: int) -> torch.Tensor:
        """(B, width) each position's block rate from the (B, n_blocks) rates drawn per block,
        blocks counted from the right end."""
        from_right = (width - 1 - torch.arange(width, device=t_blocks.device)) // self.block_size  # (S,)
        return t_blocks[:, t_blocks.shape[1] - 1 - from_right]

    def __call__(self, model: Model, batch: Batch, noise: dict[str, torch.Tensor]) -> LossOutput:
        device = batch.input_ids.device
        u = noise["u"][:, noise["u"].shape[1] - batch.width :].to(device)
        t = self.position_rates(noise["t"].to(device), batch.width)
        if self.complementary:
            t = torch.cat([t, (1.0 - t).clamp(min=self.mask_eps or 1e-6)])
            u = torch.cat([u, 1.0 - u])
            batch = batch.repeat(2)
        out = block_diffusion_loss(
            model, batch, t, u, mask_token_id=self.mask_token_id, shifted=self.config.shift_logits,
            block_size=self.block_size,
        )  # fmt: skip
        if not self.complementary:
            return out
        per_row = out.per_row.view(2, -1).mean(0)
        return LossOutput(per_row.mean(), per_row, out.n_targets)


@OBJECTIVES.register("autoregressive", "ar", "next-token", "causal-lm")
class Autoregressive(Objective):
    """Next-token cross-entropy for a causal, shifted model; draws no noise."""

    def __init__(self, config: ModelConfig, mask_eps: float = 1e-3) -> None:
        super().__init__(config, mask_eps)
        if not (config.causal and config.shift_logits):
            raise ValueError(
                f"the autoregressive objective needs a causal model with shifted logits, got "
                f"causal={config.causal}, shift_logits={config.shift_logits}; set both true "
                "or use objective 'masked-diffusion'"
            )

    def __call__(self, model: Model, batch: Batch, noise: dict[str, torch.Tensor]) -> LossOutput:
        return autoregressive_loss(model, batch)


def build_objective(name: str, config: ModelConfig, mask_eps: float = 1e-3, **options: Any) -> Objective:
    """The objective registered as ``name`` (unknown names get a "did you mean" error) with
    its own ``options`` (e.g. block-diffusion's ``complementary``), checked by name."""
    return OBJECTIVES.create(name, config=config, mask_eps=mask_eps, **options)
