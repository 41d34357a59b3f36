"""Fixed-budget schedules: counts per step, in isolation and through the loop."""

import pytest
import torch

from demask.decoding import DecodeConfig, generate, llada_split
from demask.decoding.mock import ScriptedModel, mock_config
from demask.decoding.schedules import DreamSchedule, LLaDASchedule, schedule_class


def run_counts(schedule, m, steps):
    n = torch.tensor([m])
    out = []
    for i in range(steps):
        c = int(schedule.counts(n, i, steps))
        out.append(c)
        n = n - c
    return out, int(n)


def test_llada_equal_split_10_over_4_is_3_3_2_2():
    assert llada_split(10, 4) == [3, 3, 2, 2]
    assert run_counts(LLaDASchedule(), 10, 4) == ([3, 3, 2, 2], 0)
    assert run_counts(LLaDASchedule(), 7, 7) == ([1] * 7, 0)
    assert run_counts(LLaDASchedule(), 32, 5) == (llada_split(32, 5), 0)


def test_dream_linspace_hand_computed():
    # ts = linspace(1, 1e-3, 5) = 1, .75025, .5005, .25075, .001
    # 10 * (1 - .75025) = 2.4975 -> 2; 8 * (1 - .5005/.75025) = 2.663 -> 2;
    # 6 * (1 - .25075/.5005) = 2.994 -> 2; last step: the remaining 4
    assert run_counts(DreamSchedule(), 10, 4) == ([2, 2, 2, 4], 0)


def test_dream_with_steps_equal_to_length_commits_nothing_first():
    counts, left = run_counts(DreamSchedule(), 16, 16)
    assert counts[0] == 0 and left == 0 and sum(counts) == 16


def test_schedule_names():
    assert schedule_class("LLaDA") is LLaDASchedule and schedule_class("linspace") is DreamSchedule
    with pytest.raises(ValueError, match="did you mean 'dream'"):
        DecodeConfig(schedule="drem")


def descending_confidence_model(length_total, vocab=16, shifted=False):
    """Unshifted mock: position i predicts token i % 8 with a logit that falls with i,
    except a few scrambled positions, so the confidence order is known."""
    boost = torch.tensor([5.0, 1.0, 4.0, 9.0, 2.0, 8.0, 3.0, 7.0, 6.0, 0.5] + [0.1] * 64)

    def fn(ids, absolute, call):
        b, s = ids.shape
        logits = torch.zeros(b, s, vocab)
        for j, a in enumerate(absolute.tolist()):
            target = a + 1 if shifted else a
            col = target - 2  # completion index for a prompt of 2 tokens
            logits[:, j, 3 + (target % 8)] = boost[max(col, 0)]
        return logits

    return ScriptedModel(mock_config(vocab, shifted=shifted), fn)


@pytest.mark.parametrize("shifted", [False, True])
def test_loop_follows_llada_counts_and_confidence_order(shifted):
    model = descending_confidence_model(12, shifted=shifted)
    out = generate(model, [[1, 2]], DecodeConfig(gen_length=10, steps=4, trace=True, early_stop=False))
    steps = out.trace.row(0).step_groups()
    # confidence order of the 10 positions (boosts 5,1,4,9,2,8,3,7,6,.5): 3,5,7 | 8,0,2 | 6,4 | 1,9
    assert steps == [[3, 5, 7], [0, 2, 8], [4, 6], [1, 9]]
    assert out.nfe == [4]
    assert out.tokens[0, 2:].tolist() == [3 + ((i + 2) % 8) for i in range(10)]


def test_loop_dream_schedule_wastes_the_first_step_at_full_steps():
    model = descending_confidence_model(10)
    out = generate(model, [[1, 2]], DecodeConfig(gen_length=8, steps=8, schedule="dream", trace=True, early_stop=False))
    groups = out.trace.row(0).step_groups()
    assert groups[0] == [] and len(groups) == 8 and out.nfe == [8]
    assert sorted(i for group in groups for i in group) == list(range(8))


def test_blocks_split_the_steps_and_the_remainder_goes_first():
    cfg = DecodeConfig(gen_length=12, block_length=4, steps=8)
    assert cfg.block_steps() == [3, 3, 2]
    assert DecodeConfig(gen_length=12, block_length=4).block_steps() == [4, 4, 4]
    assert DecodeConfig(gen_length=12, policy="threshold").block_steps() is None


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(gen_length=10, block_length=4), "divide gen_length"),
        (dict(gen_length=8, block_length=2, steps=3), "between the number of blocks"),
        (dict(gen_length=8, steps=9), "between the number of blocks"),
        (dict(policy="threshold", steps=8), "leave steps unset"),
        (dict(temperature=-1.0), "temperature"),
        (dict(top_p=0.0), "top_p"),
        (dict(cache="full"), "cache"),
        (dict(policy="threshold", policy_options={"threshold": 1.5}), "threshold"),
        (dict(steps=2.5), "whole number"),
    ],
)
def test_config_rejects_contradictions_with_a_named_fix(bad, match):
    with pytest.raises(ValueError, match=match):
        DecodeConfig(**bad)
