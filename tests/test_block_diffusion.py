"""Block diffusion: the block-causal mask, the two-stream training loss, exact-cache decoding,
adaptation to block-causal attention, and the bad inputs each named."""

import pytest
import torch
from helpers import tiny_checkpoint, tiny_model

from demask.decoding import DecodeConfig, generate
from demask.model import ModelConfig, load_pretrained, save_pretrained, token_logits
from demask.model.blocks import align_positions, attention_blocks, two_stream_mask
from demask.training.data import Batch
from demask.training.objectives import block_diffusion_loss, block_positions, build_objective
from demask.training.recipe import ModelRecipe, TrainRecipe
from demask.training.run import _model, adapt_attention


def block_model(block_size=4, **overrides):
    return tiny_model(block_size=block_size, std=0.3, **overrides).eval()


# ------------------------------------------------------------------------------ the mask
def test_blocks_fall_on_rotary_positions_shifted_by_one_for_shifted_models():
    pos = torch.arange(10)[None]
    assert attention_blocks(pos, 4, shifted=False).tolist() == [[0, 0, 0, 0, 1, 1, 1, 1, 2, 2]]
    # position 3 (the last token of block 0) runs with block 1, whose tokens 4..7 it predicts
    assert attention_blocks(pos, 4, shifted=True).tolist() == [[0, 0, 0, 1, 1, 1, 1, 2, 2, 2]]
    # a prompt of 3 (row 0) and of 1 token (row 1, left-padded): completions start at a multiple of 4
    positions = torch.tensor([[0, 1, 2, 3, 4], [0, 0, 0, 1, 2]])
    assert align_positions(positions, 3, 4).tolist() == [[1, 2, 3, 4, 5], [3, 3, 3, 4, 5]]


def test_block_causal_mask_with_left_padding_by_hand():
    model = block_model(block_size=2, shift_logits=False)
    attn = torch.tensor([[False, True, True, True, True], [True, True, True, True, True]])
    pos = torch.tensor([[0, 0, 1, 2, 3], [0, 1, 2, 3, 4]])
    keep, is_causal = model._attention_mask(attn, pos, pos, 5, 0)
    assert not is_causal
    # row 0: column 0 is padding (no query but itself sees it; its own output is never
    # used); blocks of positions {0,1} {2,3}
    assert keep[0, 0].int().tolist() == [
        [1, 1, 1, 0, 0],
        [0, 1, 1, 0, 0],
        [0, 1, 1, 0, 0],
        [0, 1, 1, 1, 1],
        [0, 1, 1, 1, 1],
    ]
    # row 1: blocks {0,1} {2,3} {4}
    assert keep[1, 0].int().tolist() == [
        [1, 1, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [1, 1, 1, 1, 0],
        [1, 1, 1, 1, 0],
        [1, 1, 1, 1, 1],
    ]


def test_two_stream_mask_by_hand():
    blocks = torch.tensor([[0, 0, 1, 1]])
    keep = two_stream_mask(blocks, torch.tensor([[True, True, True, True]]))[0, 0].int()
    assert keep.tolist() == [
        # noised 0..3: own block noised | earlier blocks clean
        [1, 1, 0, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0, 0, 0],
        [0, 0, 1, 1, 1, 1, 0, 0],
        [0, 0, 1, 1, 1, 1, 0, 0],
        # clean 0..3: block-causal on the clean stream, never a noised key
        [0, 0, 0, 0, 1, 1, 0, 0],
        [0, 0, 0, 0, 1, 1, 0, 0],
        [0, 0, 0, 0, 1, 1, 1, 1],
        [0, 0, 0, 0, 1, 1, 1, 1],
    ]
    padded = two_stream_mask(blocks, torch.tensor([[False, True, True, True]]))[0, 0]
    assert padded[:, 0].nonzero().squeeze(1).tolist() == [0]  # noised pad: seen only by itself
    assert padded[4:, 4].nonzero().squeeze(1).tolist() == [0]  # clean pad sees only itself


# ------------------------------------------------------------------------------ the loss
def _batch():
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(3, 30, (2, 11), generator=g)
    ids[0, 0] = 0
    attn = torch.ones(2, 11, dtype=torch.bool)
    attn[0, 0] = False
    targets = torch.zeros(2, 11, dtype=torch.bool)
    targets[:, 3:] = True  # a prompt of 3 columns, a completion of two blocks of 4
    return Batch(ids, attn, targets, torch.zeros_like(targets))


def test_block_diffusion_loss_equals_the_per_block_definition():
    """The two-stream loss equals, block by block, the masked-diffusion loss of that block
    given the clean blocks before it, computed by one plain block-causal forward per block."""
    model, batch = block_model(), _batch()
    t = torch.tensor([[0.5] * 7 + [0.7] * 4, [0.3] * 7 + [0.9] * 4])
    u = torch.rand(2, 11, generator=torch.Generator().manual_seed(4))
    out = block_diffusion_loss(model, batch, t, u, mask_token_id=31, shifted=True, block_size=4)

    positions = block_positions(batch, 4)
    masked = batch.target_mask & (u < t)
    assert masked.any() and not masked.all()
    expected = torch.zeros(2)
    for lo, hi in ((3, 7), (7, 11)):
        x = batch.input_ids.clone()
        inside = torch.zeros_like(masked)
        inside[:, lo : hi - 1] = True  # the block's last token is read only by the next block
        x[masked & inside] = 31
        x[:, hi - 1 :] = 31  # later blocks: invisible to this one
        logits = token_logits(model(x, attention_mask=batch.attention_mask, position_ids=positions), True)
        logp = torch.log_softmax(logits.float(), -1).gather(-1, batch.input_ids[..., None])[..., 0]
        scored = masked.clone()
        scored[:, :lo] = False
        scored[:, hi:] = False
        expected -= (logp * scored / t).sum(1).detach()
    torch.testing.assert_close(out.per_row.detach(), expected / 8)
    assert out.n_targets == masked.sum()


def test_block_diffusion_loss_on_a_hand_computed_model():
    """With a model whose logits are uniform except a known boost, the loss is a closed form."""

    class Const(torch.nn.Module):
        def forward(self, ids, attention_mask=None, position_ids=None):
            logits = torch.zeros(*ids.shape, 4)
            logits[..., 2] = torch.log(torch.tensor(3.0))  # p(token 2) = 3/6 = 1/2, others 1/6
            return logits

    ids = torch.tensor([[1, 2, 3, 2, 2]])  # prompt 1, completion of 4 in two blocks of 2
    targets = torch.tensor([[False, True, True, True, True]])
    batch = Batch(ids, None, targets, torch.zeros_like(targets))
    t = torch.tensor([[0.5, 0.5, 0.5, 0.25, 0.25]])
    u = torch.tensor([[0.9, 0.1, 0.9, 0.9, 0.1]])  # masks column 1 (block 0) and 4 (block 1)
    out = block_diffusion_loss(Const(), batch, t, u, mask_token_id=0, shifted=True, block_size=2)
    import math

    # -log p(2) = log 2 at column 1 (t 0.5) and column 4 (t 0.25); L_row = 4 targets
    assert out.per_row.item() == pytest.approx((math.log(2) / 0.5 + math.log(2) / 0.25) / 4)


def test_complementary_masks_score_every_target_once_per_row():
    model = block_model()
    objective = build_objective("block-diffusion", model.config, complementary=True)
    noise = objective.draw_noise(2, 11, torch.Generator().manual_seed(0))
    out = objective(model, _batch(), noise)
    assert out.per_row.shape == (2,)
    scored = _batch().target_mask.clone()
    scored[:, 0] = False
    assert out.n_targets == scored.sum()  # the mask and its complement cover each target once


def test_a_tiny_model_learns_a_completion_under_block_diffusion():
    """A few steps of the block objective on one example lower its loss (the gradient flows
    through the two-stream forward)."""
    torch.manual_seed(0)
    model = tiny_model(block_size=4)
    batch = _batch()
    objective = build_objective("block-diffusion", model.config)
    noise = objective.draw_noise(2, 11, torch.Generator().manual_seed(0))
    first = objective(model, batch, noise).loss.item()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(30):
        opt.zero_grad()
        objective(model, batch, noise).loss.backward()
        opt.step()
    assert objective(model, batch, noise).loss.item() < 0.5 * first


# ------------------------------------------------------------------------------ decoding
PROMPTS = [[5, 6, 7], [8, 9, 10, 11, 12, 13], [14]]


@pytest.mark.parametrize(
    "policy, options",
    [("confidence", {}), ("entropy", {}), ("threshold", {"threshold": 0.3}), ("random", {}), ("factor", {})],
)
def test_exact_block_cache_equals_uncached_block_causal_decoding(policy, options):
    model = block_model()
    outs = {}
    for cache in ("none", "prefix", "dual"):
        config = DecodeConfig(gen_length=16, policy=policy, policy_options=options, cache=cache, seed=1)
        outs[cache] = generate(model, PROMPTS, config)
    for cache in ("prefix", "dual"):
        assert torch.equal(outs[cache].tokens, outs["none"].tokens), cache
        assert outs[cache].nfe == outs["none"].nfe


def test_exact_cache_logits_equal_uncached_logits_bit_for_bit():
    """The cache holds exactly what a full forward computes: the current block's logits from
    a cached run equal those of the whole sequence in fp32."""
    model = block_model()
    ids = torch.randint(3, 30, (2, 12), generator=torch.Generator().manual_seed(0))
    pos = align_positions(torch.arange(12).expand(2, 12), 4, 4)
    full = model(ids, position_ids=pos)
    cache = model.new_cache(12)
    model(ids[:, :7], position_ids=pos[:, :7], cache=cache, cache_start=0)
    part = model(ids[:, 7:11], position_ids=pos[:, 7:11], cache=cache, cache_start=7)
    torch.testing.assert_close(part, full[:, 7:11], rtol=0, atol=1e-6)


def test_block_decoding_stops_once_the_end_token_is_committed():
    """Variable length: a row whose first committed token is its end token leaves the batch
    after that forward, where decoding to the end takes every step of every block."""
    model = block_model()
    with torch.no_grad():
        model.lm_head.weight.zero_()  # uniform logits: argmax is token 0, the pad (an end token)
    stopped = generate(model, PROMPTS, DecodeConfig(gen_length=16, cache="dual"))
    assert stopped.nfe == [1, 1, 1] and stopped.completions == [[], [], []]
    full = generate(model, PROMPTS, DecodeConfig(gen_length=16, cache="dual", early_stop=False))
    assert full.nfe == [16, 16, 16] and full.completions == [[], [], []]


def test_block_model_decoding_refuses_blocks_that_are_not_the_models():
    model = block_model(block_size=4)
    with pytest.raises(ValueError, match="gen_length=10 is not a whole number of the model's blocks of 4"):
        generate(model, PROMPTS, DecodeConfig(gen_length=10))
    with pytest.raises(ValueError, match="block_length=8, but the model is block-causal with blocks of 4"):
        generate(model, PROMPTS, DecodeConfig(gen_length=16, block_length=8))


# ------------------------------------------------------------------------------ adaptation and config
def test_block_causal_adaptation_changes_the_attention_and_nothing_else(tmp_path):
    ar, tok = tiny_checkpoint(tmp_path / "ar", causal=True)
    recipe = TrainRecipe(model=ModelRecipe(init_from=str(tmp_path / "ar"), attention="block-causal", block_size=4))
    adapted = _model(recipe, tok)
    assert (adapted.config.causal, adapted.config.block_size) == (False, 4)
    assert adapted.config.replace(causal=True, block_size=None) == ar.config
    torch.testing.assert_close(adapted.state_dict(), ar.state_dict(), rtol=0, atol=0)
    save_pretrained(adapted, tmp_path / "block", tok)
    assert load_pretrained(tmp_path / "block")[0].config.block_size == 4  # config.json keeps it


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(init_from="x", attention="block-causal"), "block_size=None goes with model.attention: block-causal"),
        (dict(init_from="x", attention="bidirectional", block_size=8), "block_size=8 goes with"),
        (dict(init_from="x", attention="block-causal", block_size=0), "block_size must be positive"),
    ],
)
def test_bad_block_settings_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ModelRecipe(**kwargs)


def test_bad_block_configs_and_objectives_are_named(tmp_path):
    with pytest.raises(ValueError, match="block_size=4 asks for block-causal attention but causal is true"):
        ModelConfig(causal=True, block_size=4)
    ar, _ = tiny_checkpoint(tmp_path / "ar", causal=True)
    ar.config.mask_token_id = None
    with pytest.raises(ValueError, match="has no mask token"):
        adapt_attention(ar, "block-causal", "ar", block_size=4)
    with pytest.raises(ValueError, match="is block-causal .* objective 'block-diffusion'"):
        build_objective("masked-diffusion", block_model().config)
    with pytest.raises(ValueError, match="needs a block-causal model"):
        build_objective("block-diffusion", tiny_model().config)
    batch = _batch()
    with pytest.raises(
        ValueError, match="completion \\(8 positions\\) is not a whole number of blocks of block_size=3"
    ):
        block_positions(batch, 3)
    with pytest.raises(ValueError, match="unknown option|did you mean|complement"):
        build_objective("block-diffusion", block_model().config, complement=True)
