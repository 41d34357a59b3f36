"""Rollouts through the decoding engine (demask.training.rl.rollouts)."""

from __future__ import annotations

import pytest
import torch
from helpers import tiny_model

from demask.decoding import DecodeConfig
from demask.tasks.base import Task
from demask.training.rl.rollouts import DecodingRollouts, pad_after_first_end, rank_slice

EOS, PAD, MASK = 1, 2, 3


class CharTokenizer:
    """ids = ord(c) - 90 for 'a'..'z' (7..32); special ids 1..3 decode to nothing."""

    def encode(self, text):
        return [ord(c) - 90 for c in text]

    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(i + 90) if i >= 7 else "" for i in ids)


def model():
    m = tiny_model(
        seed=3,
        std=0.5,
        vocab_size=40,
        num_layers=1,
        num_heads=2,
        mask_token_id=MASK,
        pad_token_id=PAD,
        eos_token_id=EOS,
    )
    # make the end token likely so that some rows end early
    with torch.no_grad():
        m.lm_head.weight[EOS] *= 4
    return m


def test_groups_layout_attention_and_padding_after_the_end():
    m = model()
    tasks = [Task("a", "abc", (), "f"), Task("b", "defgh", (), "f")]
    roll = DecodingRollouts(CharTokenizer(), DecodeConfig(gen_length=8, steps=8, policy="entropy", temperature=1.0))
    out = roll(m, tasks, 3, torch.Generator().manual_seed(0))
    assert out.input_ids.shape == (6, 5 + 8) and out.prompt_length == 5
    # groups are contiguous: rows 0-2 hold task a's prompt (left-padded by 2), rows 3-5 task b's
    assert out.input_ids[:3, 2:5].tolist() == [[7, 8, 9]] * 3
    assert out.input_ids[3:, :5].tolist() == [[10, 11, 12, 13, 14]] * 3
    assert out.attention_mask[:3].tolist() == [[False, False] + [True] * 11] * 3
    assert out.attention_mask[3:].all()
    assert m.training, "the model's mode is restored"
    comp = out.completion_ids
    for r in range(6):
        row = comp[r].tolist()
        ends = [k for k, t in enumerate(row) if t in (EOS, PAD)]
        if ends:  # after the first end token only pad
            assert all(t == PAD for t in row[ends[0] + 1 :])
            assert out.completions[r] == CharTokenizer().decode(row[: ends[0]])
    assert any(EOS in comp[r].tolist() for r in range(6)), "the scripted head should end some rows"
    assert all(1 <= n <= 8 for n in out.nfe)
    # repeatable from the generator alone
    again = roll(m, tasks, 3, torch.Generator().manual_seed(0))
    assert torch.equal(again.input_ids, out.input_ids)


def test_pad_after_first_end_keeps_the_first_end_token():
    x = torch.tensor([[4, 1, 5, 1], [2, 6, 7, 8], [4, 5, 6, 7]])
    assert pad_after_first_end(x, [1, 2], 2).tolist() == [[4, 1, 2, 2], [2, 2, 2, 2], [4, 5, 6, 7]]


def test_rank_slice_splits_whole_prompts():
    assert [rank_slice(6, r, 3) for r in range(3)] == [slice(0, 2), slice(2, 4), slice(4, 6)]
    with pytest.raises(ValueError, match="multiple of 4"):
        rank_slice(6, 0, 4)


def test_greedy_member_leads_each_group():
    from demask.decoding import generate

    m = model()
    tasks = [Task("a", "abc", (), "f"), Task("b", "defgh", (), "f")]
    config = DecodeConfig(gen_length=8, steps=8, policy="confidence", temperature=1.0)
    roll = DecodingRollouts(CharTokenizer(), config, greedy_per_group=1)
    out = roll(m, tasks, 3, torch.Generator().manual_seed(0))
    assert out.input_ids.shape == (6, 5 + 8) and out.prompt_length == 5
    assert out.input_ids[:3, 2:5].tolist() == [[7, 8, 9]] * 3
    assert out.input_ids[3:, :5].tolist() == [[10, 11, 12, 13, 14]] * 3
    m.eval()
    greedy = generate(
        m, [[7, 8, 9], [10, 11, 12, 13, 14]], DecodeConfig(gen_length=8, steps=8, policy="confidence", temperature=0.0)
    )
    for g, row in ((0, 0), (1, 3)):  # the first row of each group is the argmax decode
        want = pad_after_first_end(greedy.tokens[g : g + 1, 5:], [EOS, PAD], PAD)[0]
        assert torch.equal(out.completion_ids[row], want)
    # the samples differ from the greedy answer somewhere (temperature 1 on a random model)
    assert any(not torch.equal(out.completion_ids[r], out.completion_ids[0]) for r in (1, 2))
    assert torch.equal(roll(m, tasks, 3, torch.Generator().manual_seed(0)).input_ids, out.input_ids)
    with pytest.raises(ValueError, match="group_size must be >= 2"):
        roll(m, tasks, 1, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="0 or 1"):
        DecodingRollouts(CharTokenizer(), config, greedy_per_group=2)
