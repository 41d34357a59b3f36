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

Not covered: time-dependent weights other than 1/t (MDLM's general alpha_t schedules),
semi-autoregressive block masking during training, prompt masking (d1's p_mask_prompt).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from demask.model import ModelConfig, token_logits
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
    model: Model, batch: Batch, t: torch.Tensor, u: torch.Tensor, *, mask_token_id: int, shifted: bool
) -> LossOutput:
    """The masked-diffusion ELBO with the noise given.

    t: (B,) mask rates in (0, 1]; u: (B, S) uniforms, position i of row b is masked when
    it is a target and u[b, i] < t[b].
    """
    targets = scored_positions(batch, shifted)  # (B, S)
    masked = targets & (u < t[:, None])  # (B, S)
    noisy = torch.where(masked, torch.full_like(batch.input_ids, mask_token_id), batch.input_ids)
    logits = token_logits(model(noisy, batch.attention_mask), shifted)  # (B, S, V)
    ce = token_cross_entropy(logits, batch.input_ids, masked)  # (B, S)
    length = targets.sum(1).clamp(min=1)  # (B,) L_row
    per_row = ce.sum(1) / (t.float() * length)
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

    @abstractmethod
    def __call__(self, model: Model, batch: Batch, noise: dict[str, torch.Tensor]) -> LossOutput: ...


OBJECTIVES: Registry[type[Objective]] = Registry("objective", base=Objective)


@OBJECTIVES.register("masked-diffusion", "mdm", "diffusion", "elbo")
class MaskedDiffusion(Objective):
    """The masked-diffusion ELBO; t ~ U(mask_eps, 1] per row, u ~ U[0, 1) per position."""

    def __init__(self, config: ModelConfig, mask_eps: float = 1e-3) -> None:
        super().__init__(config, mask_eps)
        if config.causal:
            raise ValueError(
                "the masked-diffusion objective needs a bidirectional model, but "
                "model.causal is true; set causal: false or use objective 'autoregressive'"
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
        return {"t": t, "u": u}

    def __call__(self, model: Model, batch: Batch, noise: dict[str, torch.Tensor]) -> LossOutput:
        u = noise["u"][:, noise["u"].shape[1] - batch.width :].to(batch.input_ids.device)
        assert self.config.mask_token_id is not None  # checked in __init__
        return masked_diffusion_loss(
            model,
            batch,
            noise["t"].to(batch.input_ids.device),
            u,
            mask_token_id=self.config.mask_token_id,
            shifted=self.config.shift_logits,
        )


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


def build_objective(name: str, config: ModelConfig, mask_eps: float = 1e-3) -> Objective:
    """The objective registered as ``name`` (unknown names get a "did you mean" error)."""
    return OBJECTIVES.get(name)(config, mask_eps=mask_eps)
