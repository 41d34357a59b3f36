"""Log-prob estimators: masks, exact formulas on a scripted model, tiny-Transformer behaviour."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from helpers import tiny_model
from torch import nn

from demask.training.rl import estimators as E

V, MASK, PAD = 10, 9, 0


def expected_token(i: int) -> int:
    """The token the scripted model scores at position i (tests put it there)."""
    return 1 + (3 * i) % 7


class ScriptedModel(nn.Module):
    """A mock with closed-form log-probs.

    For every row and position i, the log-prob of ``expected_token(i)`` is

        s_i = -0.1 * (i + 1) - 0.5 * n_masked(row) - 0.25 * [i is masked] - 0.01 * n_attended(row)

    and the rest of the mass is spread evenly over the other tokens, so log_softmax of the
    logits gives s_i back. With ``shifted`` the row for token i sits at position i - 1. It
    refuses to run without an attention mask.
    """

    def __init__(self, shifted: bool = False, causal: bool = False) -> None:
        super().__init__()
        self.config = SimpleNamespace(causal=causal, shift_logits=shifted, mask_token_id=MASK)
        self.rows_seen = 0
        self.calls = 0

    @staticmethod
    def score(masked: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        """(R, L) bool masks -> (R, L) log-prob of expected_token(i) (float64)."""
        pos = torch.arange(masked.shape[1], dtype=torch.float64)
        n = masked.sum(1, keepdim=True).double()
        a = attended.sum(1, keepdim=True).double()
        return -0.1 * (pos + 1) - 0.5 * n - 0.25 * masked.double() - 0.01 * a

    def forward(self, input_ids, attention_mask=None):
        assert attention_mask is not None, "the estimator must pass the attention mask"
        self.rows_seen += input_ids.shape[0]
        self.calls += 1
        r, length = input_ids.shape
        s = self.score(input_ids == MASK, attention_mask.bool())  # (R, L)
        q = torch.empty(r, length, V, dtype=torch.float64)
        q[:] = ((1 - s.exp()) / (V - 1))[..., None]
        target = torch.tensor([expected_token(i) for i in range(length)])
        q.scatter_(2, target.expand(r, length)[..., None], s.exp()[..., None])
        logits = q.log()
        if self.config.shift_logits:  # row i-1 carries token i
            logits = torch.cat([logits[:, 1:], logits[:, -1:]], dim=1)
        return logits


def scripted_batch(batch: int, prompt_len: int, seq_len: int, left_pad: int = 0):
    """input_ids with expected_token(i) everywhere (PAD in the first left_pad prompt columns
    of row 0), and the attention mask."""
    ids = torch.tensor([[expected_token(i) for i in range(seq_len)]] * batch)
    am = torch.ones(batch, seq_len, dtype=torch.bool)
    ids[0, :left_pad] = PAD
    am[0, :left_pad] = False
    return ids, am


def fixed(estimator: E.LogProbEstimator, plan: E.MaskPlan) -> E.LogProbEstimator:
    """The estimator, made to run ``plan`` instead of drawing one."""
    estimator.plan = lambda *args, **kwargs: plan
    return estimator


# ---------------------------------------------------------------------- exact, by hand
@pytest.mark.parametrize("shifted", [False, True])
def test_coupled_formula_by_hand(shifted):
    # L = 5, P = 2, completion positions 2, 3, 4; t = 0.25, u = [0.1, 0.9, 0.3]
    # copy 0 (3 masked): s = -0.1(i+1) - 1.5 - 0.25 - 0.05 -> -2.10, -2.20, -2.30
    # copy 1 (pos 2 masked): s_2 = -0.3 - 0.5 - 0.25 - 0.05 = -1.10
    # copy 2 (pos 3, 4 masked): s_3 = -0.4 - 1.0 - 0.25 - 0.05 = -1.70, s_4 = -1.80
    # logp = 1/2 [-2.10 - 1.10/0.25, -2.20 - 1.70/0.75, -2.30 - 1.80/0.75]
    ids, am = scripted_batch(1, 2, 5)
    plan = E.coupled_plan(0.25, torch.tensor([[0.1, 0.9, 0.3]]), prompt_len=2)
    assert plan.masks[:, 0].tolist() == [
        [False, False, True, True, True],
        [False, False, True, False, False],
        [False, False, False, True, True],
    ]
    out = fixed(E.get_estimator("coupled"), plan).log_probs(ScriptedModel(shifted), ids, am, 2, seed=0)
    expected = [0.5 * (-2.10 - 1.10 / 0.25), 0.5 * (-2.20 - 1.70 / 0.75), 0.5 * (-2.30 - 1.80 / 0.75)]
    torch.testing.assert_close(out, torch.tensor([expected]), atol=1e-5, rtol=0)


def test_decoupled_formula_by_hand():
    # t = 0.5, u = [0.1, 0.9, 0.3], u2 = [0.7, 0.2, 0.4]:
    # copy 1 masks u < t: pos 2, 4 ; copy 2 masks u2 >= t: pos 2 only.
    # pos 2 is scored by both partial copies, pos 3 by neither, pos 4 by copy 1.
    # copy 0: -2.10, -2.20, -2.30 ; copy 1 (2 masked): s_2 = -0.3-1.0-0.25-0.05 = -1.60,
    #   s_4 = -0.5-1.0-0.25-0.05 = -1.80 ; copy 2 (1 masked): s_2 = -0.3-0.5-0.25-0.05 = -1.10
    ids, am = scripted_batch(1, 2, 5)
    plan = E.decoupled_plan(0.5, torch.tensor([[0.1, 0.9, 0.3]]), torch.tensor([[0.7, 0.2, 0.4]]), 2)
    out = fixed(E.get_estimator("decoupled"), plan).log_probs(ScriptedModel(), ids, am, 2, seed=0)
    expected = [0.5 * (-2.10 - 1.60 / 0.5 - 1.10 / 0.5), 0.5 * -2.20, 0.5 * (-2.30 - 1.80 / 0.5)]
    torch.testing.assert_close(out, torch.tensor([expected]), atol=1e-5, rtol=0)


@pytest.mark.parametrize("shifted", [False, True])
def test_full_mask_by_hand(shifted):
    ids, am = scripted_batch(1, 2, 5)
    out = E.get_estimator("full_mask").log_probs(ScriptedModel(shifted), ids, am, 2, seed=123)
    torch.testing.assert_close(out, torch.tensor([[-2.10, -2.20, -2.30]]), atol=1e-5, rtol=0)


def test_d1_by_hand():
    # prompt_u = [0.1, 0.5]: the first prompt token is masked (0.1 < 0.15), the second not.
    # 4 masked in all: s = -0.1(i+1) - 2.0 - 0.25 - 0.05 -> -2.60, -2.70, -2.80
    ids, am = scripted_batch(1, 2, 5)
    plan = E.d1_plan(torch.tensor([[0.1, 0.5]]), 0.15, am, 5)
    assert plan.masks[0, 0].tolist() == [True, False, True, True, True]
    out = fixed(E.get_estimator("d1"), plan).log_probs(ScriptedModel(), ids, am, 2, seed=0)
    torch.testing.assert_close(out, torch.tensor([[-2.60, -2.70, -2.80]]), atol=1e-5, rtol=0)


def test_autoregressive_on_scripted_causal_model():
    # one clean copy: n = 0, nothing masked -> s = -0.1(i+1) - 0.05
    ids, am = scripted_batch(1, 2, 5)
    model = ScriptedModel(shifted=True, causal=True)
    out = E.get_estimator("autoregressive").log_probs(model, ids, am, 2, seed=0)
    torch.testing.assert_close(out, torch.tensor([[-0.35, -0.45, -0.55]]), atol=1e-5, rtol=0)


# ---------------------------------------------------------------------- exact, random plans
def _expected_from_plan(plan: E.MaskPlan, am: torch.Tensor, prompt_len: int) -> torch.Tensor:
    """The note's combination computed independently from the plan's masks."""
    per_copy = torch.stack([ScriptedModel.score(m, am.bool()) for m in plan.masks])  # (C, B, L)
    return (plan.weights.double() * per_copy[:, :, prompt_len:]).sum(0).float()


@pytest.mark.parametrize("name", ["coupled", "decoupled", "d1", "full_mask"])
@pytest.mark.parametrize("shifted", [False, True])
def test_random_plans_match_the_formula(name, shifted):
    ids, am = scripted_batch(4, 6, 20, left_pad=2)
    est = E.get_estimator(name)
    plan = est.plan(ids, am, 6, E.make_generator(7))
    model = ScriptedModel(shifted)
    out = est.log_probs(model, ids, am, 6, seed=7)
    torch.testing.assert_close(out, _expected_from_plan(plan, am, 6), atol=1e-5, rtol=0)
    assert model.rows_seen == 4 * est.num_forward_passes and model.calls == 1


def test_coupled_weights_follow_the_note():
    t = 0.3
    u = torch.rand(3, 50, generator=torch.Generator().manual_seed(0))
    plan = E.coupled_plan(t, u, prompt_len=4)
    w = plan.weights
    assert torch.all(w[0] == 0.5)
    torch.testing.assert_close(w[1], (u < t).float() / (2 * t))
    torch.testing.assert_close(w[2], (u >= t).float() / (2 * (1 - t)))
    # each completion token has exactly one non-zero partial weight
    assert torch.all((w[1] > 0) ^ (w[2] > 0))


# ---------------------------------------------------------------------- mask properties
def test_complementary_pair_and_clean_prompt():
    ids, am = scripted_batch(8, 5, 45, left_pad=3)
    est = E.get_estimator("coupled")
    for seed in range(20):
        plan = est.plan(ids, am, 5, E.make_generator(seed))
        masks = plan.masks
        assert 0.2 <= plan.t <= 0.8
        assert not masks[:, :, :5].any(), "the prompt is never masked"
        assert masks[0, :, 5:].all(), "copy 0 masks every completion token"
        comp1, comp2 = masks[1, :, 5:], masks[2, :, 5:]
        assert torch.all(comp1 ^ comp2), "each completion token is masked in exactly one of the pair"


def test_decoupled_masks_are_independent():
    ids, am = scripted_batch(8, 5, 65)
    plan = E.get_estimator("decoupled", t_min=0.5, t_max=0.5).plan(ids, am, 5, E.make_generator(1))
    c1, c2 = plan.masks[1, :, 5:], plan.masks[2, :, 5:]
    assert not plan.masks[:, :, :5].any()
    both, neither = (c1 & c2).float().mean().item(), (~c1 & ~c2).float().mean().item()
    # independent halves: a quarter of the tokens in both, a quarter in neither (480 tokens)
    assert 0.15 < both < 0.35 and 0.15 < neither < 0.35


def test_d1_masks_a_fraction_of_real_prompt_tokens_only():
    ids, am = scripted_batch(64, 40, 48, left_pad=10)
    plan = E.get_estimator("d1").plan(ids, am, 40, E.make_generator(3))
    (mask,) = plan.masks
    assert mask[:, 40:].all()
    assert not mask[0, :10].any(), "prompt padding is never masked"
    frac = mask[:, :40][am[:, :40]].float().mean().item()
    assert 0.12 < frac < 0.18  # 2550 real prompt tokens at p = 0.15


def test_same_seed_same_masks_new_seed_new_masks():
    ids, am = scripted_batch(2, 3, 30)
    est = E.get_estimator("coupled")
    a = est.plan(ids, am, 3, E.make_generator(11))
    b = est.plan(ids, am, 3, E.make_generator(11))
    c = est.plan(ids, am, 3, E.make_generator(12))
    assert torch.equal(a.masks, b.masks) and a.t == b.t
    assert not torch.equal(a.masks, c.masks)
    model = ScriptedModel()
    assert torch.equal(est.log_probs(model, ids, am, 3, 11), est.log_probs(model, ids, am, 3, 11))
    gen = torch.Generator().manual_seed(11)  # a generator is used as is
    assert torch.equal(est.log_probs(model, ids, am, 3, gen), est.log_probs(model, ids, am, 3, 11))


def test_completion_mask_instead_of_prompt_length():
    ids, am = scripted_batch(2, 3, 8)
    comp = torch.zeros(2, 8, dtype=torch.bool)
    comp[:, 3:] = True
    est = E.get_estimator("coupled")
    model = ScriptedModel()
    assert torch.equal(est.log_probs(model, ids, am, comp, 5), est.log_probs(model, ids, am, 3, 5))
    comp[1, 3] = False
    with pytest.raises(ValueError, match="same last columns"):
        est.log_probs(model, ids, am, comp, 5)


# ---------------------------------------------------------------------- errors
def test_errors_name_the_fix():
    ids, am = scripted_batch(1, 2, 5)
    with pytest.raises(ValueError, match="did you mean 'coupled'"):
        E.get_estimator("copuled")
    with pytest.raises(ValueError, match="t_min"):
        E.get_estimator("coupled", t_min=0.9, t_max=0.8)
    with pytest.raises(ValueError, match="p_mask_prompt"):
        E.get_estimator("d1", p_mask_prompt=1.0)
    with pytest.raises(ValueError, match="use 'coupled'"):
        E.get_estimator("autoregressive").log_probs(ScriptedModel(shifted=True), ids, am, 2, 0)
    with pytest.raises(ValueError, match="use 'autoregressive'"):
        E.get_estimator("coupled").log_probs(ScriptedModel(True, causal=True), ids, am, 2, 0)
    no_mask = ScriptedModel()
    no_mask.config.mask_token_id = None
    with pytest.raises(ValueError, match="mask_token_id"):
        E.get_estimator("full_mask").log_probs(no_mask, ids, am, 2, 0)
    with pytest.raises(ValueError, match="at least one prompt token"):
        E.get_estimator("full_mask").log_probs(ScriptedModel(shifted=True), ids, am, 0, 0)
    with pytest.raises(ValueError, match="no completion"):
        E.get_estimator("full_mask").log_probs(ScriptedModel(), ids, am, 5, 0)
    assert E.estimator_names() == ["coupled", "decoupled", "full_mask", "d1", "autoregressive"]
    assert {n: E.get_estimator(n).num_forward_passes for n in E.estimator_names()} == {
        "coupled": 3,
        "decoupled": 3,
        "full_mask": 1,
        "d1": 1,
        "autoregressive": 1,
    }


# ---------------------------------------------------------------------- tiny Transformer
MODEL_ARGS = dict(max_position_embeddings=64, eos_token_id=None)  # where it differs from helpers.TINY


def test_left_padding_does_not_change_log_probs():
    model = tiny_model(**MODEL_ARGS)
    prompt = torch.tensor([5, 6, 7])
    completion = torch.tensor([8, 9, 10, 11])
    alone = torch.cat([prompt, completion])[None]
    padded = torch.cat([torch.tensor([0, 0]), prompt, completion])[None]
    am_padded = torch.tensor([[0, 0, 1, 1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    est = E.get_estimator("full_mask")
    with torch.no_grad():
        a = est.log_probs(model, alone, None, 3, 0)
        b = est.log_probs(model, padded, am_padded, 5, 0)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_chunked_forward_matches_one_batch():
    model = tiny_model(**MODEL_ARGS)
    ids = torch.randint(1, 31, (3, 12), generator=torch.Generator().manual_seed(0))
    am = torch.ones_like(ids, dtype=torch.bool)
    with torch.no_grad():
        one = E.get_estimator("coupled").log_probs(model, ids, am, 4, 9)
        chunked = E.get_estimator("coupled", max_rows=2).log_probs(model, ids, am, 4, 9)
    torch.testing.assert_close(one, chunked, atol=1e-5, rtol=0)


def test_autoregressive_is_exact_on_a_causal_transformer():
    model = tiny_model(causal=True, **MODEL_ARGS)
    ids = torch.randint(1, 31, (2, 10), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = E.get_estimator("autoregressive").log_probs(model, ids, None, 4, 0)
        logits = model(ids)  # position i-1 predicts token i
        manual = torch.stack(
            [logits[:, i - 1].log_softmax(-1).gather(-1, ids[:, i : i + 1])[:, 0] for i in range(4, 10)], dim=1
        )
    torch.testing.assert_close(out, manual, atol=1e-5, rtol=0)


def test_log_probs_carry_gradients_and_are_unshifted_aware():
    for shifted in (False, True):
        model = tiny_model(shift_logits=shifted, **MODEL_ARGS)
        ids = torch.randint(1, 31, (2, 10), generator=torch.Generator().manual_seed(2))
        out = E.get_estimator("coupled").log_probs(model, ids, None, 4, 0)
        assert out.shape == (2, 6) and out.dtype == torch.float32
        assert torch.all(out < 0)
        out.sum().backward()
        assert model.lm_head.weight.grad is not None and model.lm_head.weight.grad.abs().sum() > 0
