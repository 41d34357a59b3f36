"""AR-ness and the first-step profile, on hand-made traces with hand-computed values."""

import math

import pytest
import torch

from demask.analysis import (
    commit_order,
    first_step_profile,
    global_arness,
    local_arness,
    position_profile,
    trace_arness,
)
from demask.decoding.mock import tiny_transformer
from demask.decoding.trace import Trace, TraceStep
from demask.model.transformer import token_logits


def test_left_to_right_is_one_for_every_k():
    steps = [[i] for i in range(6)]
    for k in (1, 2, 3, 6):
        assert local_arness(steps, k) == 1.0
        assert global_arness(steps, k) == 1.0


def test_right_to_left():
    steps = [[3], [2], [1], [0]]
    assert local_arness(steps, 1) == 0.0
    assert global_arness(steps, 1) == 0.25  # only the last commit is the leftmost masked
    assert global_arness(steps, 2) == 0.5  # 1 then 0 are among the 2 leftmost
    assert global_arness(steps, 4) == 1.0


def test_several_tokens_per_step_are_ordered_left_to_right():
    steps = [[2, 0], [3, 1]]
    assert commit_order(steps) == [0, 2, 1, 3]
    # local@1: 0 extends the prompt; 2 after 0, 1 after 2, 3 after 1 do not -> 1/4
    assert local_arness(steps, 1) == 0.25
    # global@1: 0 yes; 2 no (1 is masked left of it); 1 yes; 3 yes -> 3/4
    assert global_arness(steps, 1) == 0.75
    assert global_arness(steps, 2) == 1.0
    # one step that commits everything reads as left to right
    assert local_arness([[4, 1, 0, 3, 2]], 3) == 1.0


def test_local_arness_k_needs_k_consecutive_predecessors():
    steps = [[0], [1], [5], [6], [7]]
    # k=1: 0 (after prompt) y, 1 y, 5 n, 6 y, 7 y -> 4/5
    assert local_arness(steps, 1) == pytest.approx(0.8)
    # k=2: 0 y (-1, -2), 1 y (0, -1), 5 n, 6 n (5 then 1), 7 y (6, 5) -> 3/5
    assert local_arness(steps, 2) == pytest.approx(0.6)
    # global@1: 0 y, 1 y, 5 n (2,3,4 masked), 6 n, 7 n -> 2/5
    assert global_arness(steps, 1) == pytest.approx(0.4)
    # 5, 6 and 7 each have 3 masked positions (2, 3, 4) to their left
    assert global_arness(steps, 3) == pytest.approx(0.4)
    assert global_arness(steps, 4) == 1.0


def test_bad_traces_are_refused():
    with pytest.raises(ValueError, match="twice"):
        local_arness([[0], [0]])
    with pytest.raises(ValueError, match="empty"):
        global_arness([[], []])
    with pytest.raises(ValueError, match="k must be"):
        local_arness([[0]], 0)


def test_trace_arness_reads_a_batched_trace():
    trace = Trace(batch_size=2, gen_length=4)
    # step 1: row 0 commits 1 and 0, row 1 commits 3; step 2: row 0 commits 2, 3; row 1 0, 1, 2
    trace.record(
        TraceStep(
            rows=torch.tensor([0, 1]),
            nfe=torch.tensor([1, 1]),
            offset=0,
            commit=torch.tensor([[1, 1, 0, 0], [0, 0, 0, 1]], dtype=torch.bool),
            tokens=torch.zeros(2, 4, dtype=torch.long),
            scores=torch.zeros(2, 4),
            confidence=torch.ones(2, 4),
        )
    )
    trace.record(
        TraceStep(
            rows=torch.tensor([0, 1]),
            nfe=torch.tensor([2, 2]),
            offset=0,
            commit=torch.tensor([[0, 0, 1, 1], [1, 1, 1, 0]], dtype=torch.bool),
            tokens=torch.zeros(2, 4, dtype=torch.long),
            scores=torch.zeros(2, 4),
            confidence=torch.ones(2, 4),
        )
    )
    out = trace_arness(trace, k=1)
    assert out["local"] == [1.0, 0.5]  # row 1: order 3,0,1,2 -> 3 n, 0 n (after 3), 1 y, 2 y
    assert out["global"] == [1.0, 0.75]


def test_position_profile_exact():
    logits = torch.tensor(
        [[[0.0, 0.0, 0.0, 0.0], [100.0, 0.0, 0.0, 0.0]], [[0.0, 0.0, 0.0, 0.0], [math.log(3.0), 0.0, -1e9, -1e9]]]
    )
    prof = position_profile(logits)
    assert prof["confidence"].tolist() == pytest.approx([0.25, (1.0 + 0.75) / 2])
    h2 = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert prof["entropy"].tolist() == pytest.approx([math.log(4), h2 / 2], abs=1e-5)
    only_first = position_profile(logits, valid=torch.tensor([True, False]))
    assert only_first["confidence"].tolist() == pytest.approx([0.25, 1.0])


def test_first_step_profile_is_one_all_masked_forward():
    torch.manual_seed(0)
    model = tiny_transformer(shifted=True)
    prof = first_step_profile(model, [[1, 2, 3]], gen_length=6)
    cfg = model.config
    x = torch.tensor([[1, 2, 3] + [cfg.mask_token_id] * 6])
    with torch.no_grad():
        want = position_profile(token_logits(model(x), True)[:, 3:])
    assert torch.allclose(prof["confidence"], want["confidence"])
    assert prof["confidence"].shape == (6,)
