"""Adapting an autoregressive checkpoint to masked diffusion (model.attention): the attention
changes and nothing else of the checkpoint."""

import pytest
import torch
from helpers import tiny_checkpoint

from demask.training.recipe import ModelRecipe, TrainRecipe
from demask.training.run import _model, adapt_attention


def test_bidirectional_adaptation_keeps_every_weight_and_the_shift(tmp_path):
    ar, tok = tiny_checkpoint(tmp_path / "ar", causal=True)
    recipe = TrainRecipe(model=ModelRecipe(init_from=str(tmp_path / "ar"), attention="bidirectional"))
    adapted = _model(recipe, tok)
    assert (ar.config.causal, adapted.config.causal) == (True, False)
    assert adapted.config.shift_logits and adapted.config.replace(causal=True) == ar.config
    torch.testing.assert_close(adapted.state_dict(), ar.state_dict(), rtol=0, atol=0)
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        before, after = ar.eval()(ids), adapted.eval()(ids)
    # the last position already saw everything; earlier ones now see the right context too
    torch.testing.assert_close(after[:, -1], before[:, -1])
    assert not torch.allclose(after[:, 0], before[:, 0])


def test_no_attention_key_keeps_the_checkpoints(tmp_path):
    _, tok = tiny_checkpoint(tmp_path / "ar", causal=True)
    assert _model(TrainRecipe(model=ModelRecipe(init_from=str(tmp_path / "ar"))), tok).config.causal


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(init_from="x", attention="block"), "model.attention=.block. is not one of"),
        (dict(attention="bidirectional"), "applies to a checkpoint .*model.config.causal"),
    ],
)
def test_bad_attention_settings_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ModelRecipe(**kwargs)


def test_a_checkpoint_without_a_mask_token_cannot_become_a_diffusion_model(tmp_path):
    ar, _ = tiny_checkpoint(tmp_path / "ar", causal=True)
    ar.config.mask_token_id = None
    with pytest.raises(ValueError, match="has no mask token .* add a mask token"):
        adapt_attention(ar, "bidirectional", "ar")
    ar.config.shift_logits = False
    with pytest.raises(ValueError, match="shift_logits false"):
        adapt_attention(ar, "causal", "ar")


# ------------------------------------------------------------------ attention annealing
def _anneal_batch():
    from demask.training.data import Batch

    ids = torch.randint(3, 30, (2, 8), generator=torch.Generator().manual_seed(0))
    ids[0, 0] = 0
    attn = torch.ones(2, 8, dtype=torch.bool)
    attn[0, 0] = False
    targets = torch.zeros(2, 8, dtype=torch.bool)
    targets[:, 3:] = True
    return Batch(ids, attn, targets, torch.zeros_like(targets))


def test_annealing_starts_causal_and_ends_at_the_plain_objective():
    from helpers import tiny_model

    from demask.training.objectives import build_objective

    model = tiny_model().eval()
    causal = tiny_model(causal=True).eval()  # the same weights (same seed), causal attention
    batch = _anneal_batch()
    annealed = build_objective("masked-diffusion", model.config, anneal_steps=10)
    plain = build_objective("masked-diffusion", model.config)
    noise = annealed.draw_noise(2, 8, torch.Generator().manual_seed(1))
    assert noise["keys"].shape == (2, 8, 8)
    annealed.at_step(0)  # nothing to the right is visible yet: the causal model's loss
    start = annealed(model, batch, noise).per_row
    torch.testing.assert_close(start, plain(causal, batch, noise).per_row)
    annealed.at_step(5)  # half the later keys: neither the causal nor the full loss
    middle = annealed(model, batch, noise).per_row
    assert not torch.allclose(middle, start) and not torch.allclose(middle, plain(model, batch, noise).per_row)
    annealed.at_step(10)  # done: the plain objective with the same noise
    torch.testing.assert_close(annealed(model, batch, noise).per_row, plain(model, batch, noise).per_row)


def test_annealing_longer_than_the_run_is_refused():
    from demask.training.config import TrainConfig

    with pytest.raises(ValueError, match="anneal_steps=500 is longer than the run \\(max_steps=100\\)"):
        TrainConfig(max_steps=100, objective_options={"anneal_steps": 500})
    with pytest.raises(ValueError, match="anneal_steps must be >= 0"):
        from helpers import tiny_config

        from demask.training.objectives import build_objective

        build_objective("masked-diffusion", tiny_config(), anneal_steps=-1)
