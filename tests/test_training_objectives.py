"""Objectives and likelihood estimators on hand-computed inputs (scripted logits)."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import tiny_model
from torch import nn

from demask.model import ModelConfig
from demask.training.data import Batch
from demask.training.likelihood import (
    autoregressive_log_likelihood,
    elbo_log_likelihood,
    stratified_mask_counts,
)
from demask.training.objectives import (
    OBJECTIVES,
    autoregressive_loss,
    build_objective,
    masked_diffusion_loss,
)

LN = math.log
MASK = 3


class Scripted(nn.Module):
    """Returns a fixed logits table whatever the input; records what it was given.

    table: (S, V) shared by every row, or (B, S, V).
    """

    def __init__(self, table: torch.Tensor, causal: bool = False, shift: bool = False) -> None:
        super().__init__()
        self.table = table
        self.calls: list[tuple[torch.Tensor, torch.Tensor | None]] = []
        self.config = ModelConfig(
            vocab_size=table.shape[-1],
            hidden_size=8,
            intermediate_size=8,
            num_layers=1,
            num_heads=1,
            num_kv_heads=1,
            causal=causal,
            shift_logits=shift,
            mask_token_id=MASK,
        )

    def forward(self, input_ids, attention_mask=None):
        self.calls.append((input_ids.clone(), None if attention_mask is None else attention_mask.clone()))
        b, s = input_ids.shape
        table = self.table if self.table.ndim == 3 else self.table.expand(b, *self.table.shape)
        return table[:, :s].clone().requires_grad_(True)


def rows(*logits: list[float]) -> torch.Tensor:
    return torch.tensor(logits, dtype=torch.float32)


def sft_batch() -> Batch:
    # prompt [0] | completion [1, 2] + fill pad [1]
    ids = torch.tensor([[0, 1, 2, 1]])
    target = torch.tensor([[False, True, True, True]])
    fill = torch.tensor([[False, False, False, True]])
    return Batch(ids, None, target, fill)


# ------------------------------------------------------------------ masked diffusion
def test_masked_diffusion_unshifted_hand_computed():
    # u < t=0.5 at positions 0 (prompt: never masked), 1 and 3 (the pad fill: a target).
    table = rows([0, 0, 9, 0], [0, LN(3), 0, 0], [5, 0, 0, 0], [0, 0, 0, 0])
    model = Scripted(table, shift=False)
    t, u = torch.tensor([0.5]), torch.tensor([[0.0, 0.2, 0.9, 0.4]])
    out = masked_diffusion_loss(model, sft_batch(), t, u, mask_token_id=MASK, shifted=False)
    # CE at 1: -log(3/6) = ln 2; at 3: ln 4; sum / t / L = 3 ln2 / 0.5 / 3.
    assert out.loss.item() == pytest.approx(2 * LN(2), rel=1e-6)
    assert out.n_targets.item() == 2
    assert model.calls[0][0].tolist() == [[0, MASK, 2, MASK]]


def test_masked_diffusion_shifted_reads_the_previous_row():
    # The same predictions moved one row up: row i-1 scores token i.
    table = rows([0, LN(3), 0, 0], [5, 0, 0, 0], [0, 0, 0, 0], [0, 0, 9, 0])
    model = Scripted(table, shift=True)
    t, u = torch.tensor([0.5]), torch.tensor([[0.0, 0.2, 0.9, 0.4]])
    out = masked_diffusion_loss(model, sft_batch(), t, u, mask_token_id=MASK, shifted=True)
    assert out.loss.item() == pytest.approx(2 * LN(2), rel=1e-6)
    # Read unshifted, the same table gives another value: the alignment matters.
    other = masked_diffusion_loss(Scripted(table), sft_batch(), t, u, mask_token_id=MASK, shifted=False)
    assert other.loss.item() != pytest.approx(out.loss.item(), rel=1e-3)


def test_masked_diffusion_per_row_weights_and_normaliser():
    ids = torch.tensor([[0, 1, 2, 1], [2, 2, 1, 0]])
    target = torch.tensor([[False, True, True, True], [False, False, True, True]])
    batch = Batch(ids, None, target, torch.zeros_like(target))
    model = Scripted(torch.zeros(4, 4))  # uniform: every CE is ln 4
    t = torch.tensor([0.25, 1.0])
    u = torch.tensor([[0.9, 0.1, 0.2, 0.3], [0.0, 0.0, 0.5, 0.99]])
    out = masked_diffusion_loss(model, batch, t, u, mask_token_id=MASK, shifted=False)
    # row 0: masked {1, 2} (u < 0.25), L = 3 -> 2 ln4 / 0.25 / 3; row 1: masked {2, 3}, L = 2.
    expected = torch.tensor([2 * LN(4) / 0.25 / 3, 2 * LN(4) / 1.0 / 2])
    torch.testing.assert_close(out.per_row, expected)
    assert out.loss.item() == pytest.approx(expected.mean().item())
    # Row 1's prompt position 1 had u = 0 < t but is not a target: unchanged.
    assert model.calls[0][0][1].tolist() == [2, 2, MASK, MASK]


def test_shifted_model_never_scores_position_zero():
    ids = torch.tensor([[0, 1, 2, 1]])
    ones = torch.ones_like(ids, dtype=torch.bool)
    batch = Batch(ids, None, ones, torch.zeros_like(ones))  # pretraining: all targets
    model = Scripted(torch.zeros(4, 4), shift=True)
    out = masked_diffusion_loss(model, batch, torch.tensor([1.0]), torch.zeros(1, 4), mask_token_id=MASK, shifted=True)
    assert model.calls[0][0].tolist() == [[0, MASK, MASK, MASK]]
    assert out.n_targets.item() == 3
    assert out.loss.item() == pytest.approx(3 * LN(4) / 3)


def test_objective_right_aligns_wider_noise():
    model = Scripted(rows([0, 0, 9, 0], [0, LN(3), 0, 0], [5, 0, 0, 0], [0, 0, 0, 0]))
    objective = build_objective("masked-diffusion", model.config)
    noise = {"t": torch.tensor([0.5]), "u": torch.tensor([[0.99, 0.99, 0.0, 0.2, 0.9, 0.4]])}
    out = objective(model, sft_batch(), noise)
    assert out.loss.item() == pytest.approx(2 * LN(2), rel=1e-6)


def test_noise_mask_rates_lie_in_eps_to_one():
    objective = build_objective("mdm", Scripted(torch.zeros(2, 4)).config, mask_eps=0.3)
    noise = objective.draw_noise(4096, 5, torch.Generator().manual_seed(0))
    assert noise["u"].shape == (4096, 5) and noise["t"].shape == (4096,)
    assert noise["t"].min() > 0.3 and noise["t"].max() <= 1.0
    assert noise["t"].mean().item() == pytest.approx(0.65, abs=0.01)


# ------------------------------------------------------------------ autoregressive
def test_autoregressive_loss_hand_computed():
    ids = torch.tensor([[0, 1, 2, 3, 1]])  # prompt [0] | 1, 2, end 3, fill 1
    target = torch.tensor([[False, True, True, True, True]])
    fill = torch.tensor([[False, False, False, False, True]])
    table = rows([0, LN(3), 0, 0], [0, 0, 0, 0], [0, 0, 0, LN(5)], [-9, 9, -9, -9], [0, 0, 0, 0])
    model = Scripted(table, causal=True, shift=True)
    out = autoregressive_loss(model, Batch(ids, None, target, fill))
    # ln 2 (token 1) + ln 4 (token 2) + ln 8/5 (end token); the fill is not scored; / 4 slots.
    assert out.loss.item() == pytest.approx((LN(2) + LN(4) + LN(8 / 5)) / 4, rel=1e-6)
    assert out.n_targets.item() == 3
    assert model.calls[0][0].tolist() == ids.tolist()  # clean input


def test_registry_names_and_errors():
    assert {"masked-diffusion", "autoregressive"} <= set(OBJECTIVES.names())
    cfg = Scripted(torch.zeros(2, 4)).config
    assert type(build_objective("masked_diffusion", cfg)).__name__ == "MaskedDiffusion"
    with pytest.raises(ValueError, match="did you mean 'mdm'"):
        build_objective("mdn", cfg)
    with pytest.raises(ValueError, match="bidirectional"):
        build_objective("mdm", cfg.replace(causal=True))
    with pytest.raises(ValueError, match="causal model with shifted logits"):
        build_objective("ar", cfg)


# ------------------------------------------------------------------ ELBO log-likelihood
def test_stratified_counts_cover_every_length():
    g = torch.Generator().manual_seed(3)
    counts = stratified_mask_counts(torch.tensor([5, 3]), 5, g)
    assert sorted(counts[0].tolist()) == [1, 2, 3, 4, 5]
    assert set(counts[1].tolist()) <= {1, 2, 3} and sorted(set(counts[1].tolist())) == [1, 2, 3]
    with pytest.raises(ValueError, match="at least one counted token"):
        stratified_mask_counts(torch.tensor([0]), 2, g)


def test_elbo_is_exact_for_uniform_predictions():
    # Every CE is ln V, so (L / l) * l * ln V = L ln V for every draw.
    model = Scripted(torch.zeros(6, 5))
    g = torch.Generator().manual_seed(0)
    value = elbo_log_likelihood(
        model, torch.tensor([[0, 1], [2, 2]]), torch.tensor([[1, 2, 0, 4], [4, 4, 4, 4]]), n_draws=7, generator=g
    )
    torch.testing.assert_close(value, torch.full((2,), -4 * LN(5)))


def test_elbo_masks_exactly_l_completion_tokens_per_draw():
    model = Scripted(torch.zeros(6, 5))
    g = torch.Generator().manual_seed(1)
    elbo_log_likelihood(model, torch.tensor([[0, 1]]), torch.tensor([[1, 2, 0, 4]]), n_draws=4, generator=g)
    noisy = model.calls[0][0]  # (4 draws, 6)
    assert (noisy[:, :2] == torch.tensor([0, 1])).all()  # prompt clean
    assert sorted((noisy[:, 2:] == MASK).sum(1).tolist()) == [1, 2, 3, 4]


def test_elbo_is_unbiased_for_context_free_predictions():
    # Predictions that ignore the context: the ELBO's expectation is the exact log-likelihood.
    torch.manual_seed(0)
    table = torch.randn(7, 6) * 2
    completion = torch.tensor([[3, 0, 5, 1, 2]])
    exact = table[2:].log_softmax(-1).gather(1, completion[0][:, None]).sum()
    model = Scripted(table)
    value = elbo_log_likelihood(
        model, torch.tensor([[4, 4]]), completion, n_draws=4000, generator=torch.Generator().manual_seed(0)
    )
    assert value.item() == pytest.approx(exact.item(), rel=0.02)


def test_elbo_shifted_reads_previous_row():
    torch.manual_seed(1)
    table = torch.randn(5, 6)
    completion = torch.tensor([[3, 0, 5]])
    exact = table[1:4].log_softmax(-1).gather(1, completion[0][:, None]).sum()
    value = elbo_log_likelihood(
        Scripted(table, shift=True),
        torch.tensor([[4, 4]]),
        completion,
        n_draws=3000,
        generator=torch.Generator().manual_seed(0),
    )
    assert value.item() == pytest.approx(exact.item(), rel=0.02)


def test_elbo_completion_mask_counts_only_marked_tokens():
    model = Scripted(torch.zeros(5, 5))
    counted = torch.tensor([[True, False, True]])
    value = elbo_log_likelihood(
        model,
        torch.tensor([[0, 1]]),
        torch.tensor([[1, 2, 4]]),
        n_draws=6,
        generator=torch.Generator().manual_seed(0),
        completion_mask=counted,
    )
    assert value.item() == pytest.approx(-2 * LN(5))
    noisy = model.calls[0][0]
    assert (noisy[:, 3] == 2).all()  # the uncounted token stays visible


# where the model differs from helpers.TINY (1024: ModelConfig's default context)
MODEL_ARGS = dict(
    vocab_size=12,
    hidden_size=16,
    intermediate_size=32,
    num_heads=2,
    max_position_embeddings=1024,
    mask_token_id=MASK,
    pad_token_id=2,
    eos_token_id=None,
    std=0.5,
)


def test_elbo_with_left_padding_and_chunking_matches_unpadded():
    model = tiny_model(**MODEL_ARGS).eval()
    completion = torch.tensor([[5, 6, 7]])
    plain = elbo_log_likelihood(
        model, torch.tensor([[8, 9]]), completion, n_draws=6, generator=torch.Generator().manual_seed(4)
    )
    padded = elbo_log_likelihood(
        model,
        torch.tensor([[2, 2, 8, 9]]),
        completion,
        n_draws=6,
        generator=torch.Generator().manual_seed(4),
        prompt_mask=torch.tensor([[0, 0, 1, 1]]),
        rows_per_forward=4,
    )
    torch.testing.assert_close(plain, padded, rtol=1e-5, atol=1e-5)


def test_elbo_has_gradients_and_refuses_causal_models():
    model = tiny_model(**MODEL_ARGS).eval()
    value = elbo_log_likelihood(
        model, torch.tensor([[8]]), torch.tensor([[5, 6]]), n_draws=2, generator=torch.Generator().manual_seed(0)
    )
    value.sum().backward()
    assert model.lm_head.weight.grad is not None and model.lm_head.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="autoregressive_log_likelihood"):
        elbo_log_likelihood(
            tiny_model(causal=True, **MODEL_ARGS).eval(), torch.tensor([[8]]), torch.tensor([[5]]), 1, torch.Generator()
        )


def test_autoregressive_log_likelihood_is_the_chain_rule():
    model = tiny_model(causal=True, **MODEL_ARGS).eval()
    prompt, completion = torch.tensor([[8, 9]]), torch.tensor([[5, 6, 7]])
    full = torch.cat([prompt, completion], 1)
    logp = model(full).log_softmax(-1)  # row i predicts token i + 1
    exact = sum(logp[0, 1 + j, completion[0, j]] for j in range(3))
    value = autoregressive_log_likelihood(model, prompt, completion)
    assert value.item() == pytest.approx(exact.item(), rel=1e-5)
    padded = autoregressive_log_likelihood(
        model, torch.tensor([[2, 8, 9]]), completion, prompt_mask=torch.tensor([[0, 1, 1]])
    )
    assert padded.item() == pytest.approx(exact.item(), rel=1e-4)
