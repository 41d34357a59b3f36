"""Each unmasking policy's choice on hand-made step states: which positions, how many."""

import math

import pytest
import torch

from demask.decoding import DecodeConfig, LearnedPolicy, StepState, make_policy, policy_class
from demask.decoding.policies import (
    AdaptivePolicy,
    ConfidencePolicy,
    EntropyBoundPolicy,
    EntropyPolicy,
    FactorPolicy,
    LeftToRightPolicy,
    MarginPolicy,
    RandomPolicy,
    Selection,
    ThresholdPolicy,
    commit_top,
)


def state_from(probs, masked, counts=None, tokens=None, **kw):
    """probs: (A, S, V) nested lists; tokens default to the argmax."""
    probs = torch.tensor(probs, dtype=torch.float32)
    tokens = probs.argmax(-1) if tokens is None else torch.tensor(tokens)
    masked = torch.tensor(masked, dtype=torch.bool)
    counts = None if counts is None else torch.tensor(counts)
    kw.setdefault("nfe", torch.ones(probs.shape[0], dtype=torch.long))
    return StepState(
        tokens=tokens, probs=probs, masked=masked, step=0, gen_length=probs.shape[1], block_start=0, counts=counts, **kw
    )


def two_token(ps):
    """One row of 2-token distributions with p(token 0) = p."""
    return [[p, 1 - p] for p in ps]


def committed(sel):
    return [row.nonzero().flatten().tolist() for row in sel.commit]


def test_confidence_takes_the_counts_most_confident_masked_positions():
    # position 1 is the surest but already committed, so it is never chosen again
    st = state_from([two_token([0.6, 0.99, 0.9, 0.7, 0.8])], [[1, 0, 1, 1, 1]], counts=[2])
    assert committed(ConfidencePolicy().select(st)) == [[2, 4]]
    st = state_from([two_token([0.6, 0.99, 0.9, 0.7, 0.8])], [[1, 0, 1, 1, 1]], counts=[0])
    assert committed(ConfidencePolicy().select(st)) == [[]]


def test_counts_differ_per_row_and_never_exceed_masked():
    st = state_from([two_token([0.6, 0.9, 0.7]), two_token([0.8, 0.55, 0.95])], [[1, 1, 1], [1, 0, 0]], counts=[3, 1])
    assert committed(ConfidencePolicy().select(st)) == [[0, 1, 2], [0]]


def test_confidence_uses_the_chosen_token_not_the_top_token():
    # sampled token 1 at position 0 has probability 0.3 although its top-1 is 0.7
    st = state_from([two_token([0.7, 0.6])], [[1, 1]], counts=[1], tokens=[[1, 0]])
    assert committed(ConfidencePolicy().select(st)) == [[1]]


def test_margin_and_entropy_rank_differently_from_confidence():
    probs = [[[0.5, 0.45, 0.05], [0.4, 0.3, 0.3], [0.45, 0.1, 0.45]]]
    # confidence: 0.5, 0.4, 0.45 -> pos 0; margin: 0.05, 0.1, 0.0 -> pos 1
    st = state_from(probs, [[1, 1, 1]], counts=[1])
    assert committed(ConfidencePolicy().select(st)) == [[0]]
    assert committed(MarginPolicy().select(st)) == [[1]]
    # entropies: H(.5,.45,.05)=0.834 < H(.45,.1,.45)=0.948 < H(.4,.3,.3)=1.089 -> pos 0 then 2
    st2 = state_from(probs, [[1, 1, 1]], counts=[2])
    assert committed(EntropyPolicy().select(st2)) == [[0, 2]]
    ent = st2.neg_entropy[0].tolist()
    want = [sum(p * math.log(p) for p in row) for row in probs[0]]
    assert ent == pytest.approx(want, abs=1e-6)


def test_left_to_right_takes_the_leftmost_masked():
    st = state_from([two_token([0.1, 0.99, 0.99, 0.2, 0.99])], [[0, 0, 1, 1, 1]], counts=[2])
    assert committed(LeftToRightPolicy().select(st)) == [[2, 3]]


def test_ties_go_left_and_unmasked_never_win_even_at_minus_infinity():
    key = torch.tensor([[1.0, 1.0, 1.0, float("-inf")]])
    masked = torch.tensor([[False, True, True, True]])
    assert commit_top(key, torch.tensor([2]), masked).tolist() == [[False, True, True, False]]
    assert commit_top(key, torch.tensor([3]), masked).tolist() == [[False, True, True, True]]


def test_threshold_commits_all_above_tau_and_at_least_one():
    st = state_from(
        [two_token([0.95, 0.5, 0.9, 0.92]), two_token([0.6, 0.7, 0.55, 0.51])], [[1, 1, 1, 0], [1, 1, 1, 1]]
    )
    assert committed(ThresholdPolicy(0.9).select(st)) == [[0, 2], [1]]
    assert committed(ThresholdPolicy(0.6).select(st)) == [[0, 2], [0, 1]]


def test_left_to_right_threshold_accepts_the_sure_run_after_the_leftmost():
    from demask.decoding.policies import LeftToRightThresholdPolicy

    st = state_from(
        [
            two_token([0.99, 0.5, 0.95, 0.92, 0.97]),  # position 0 done; 1 is the leftmost masked
            two_token([0.95, 0.92, 0.5, 0.99, 0.99]),  # 2 breaks the run: 3 and 4 wait
            two_token([0.6, 0.7, 0.55, 0.51, 0.99]),  # nothing sure: the leftmost only
        ],
        [[0, 1, 1, 1, 1], [1, 1, 1, 1, 1], [1, 1, 1, 1, 1]],
    )
    assert committed(LeftToRightThresholdPolicy(0.9).select(st)) == [[1, 2, 3, 4], [0, 1], [0]]
    assert committed(LeftToRightThresholdPolicy(1.0).select(st)) == [[1], [0], [0]]  # plain left to right


def test_adaptive_policies_commit_everything_at_the_cap():
    st = state_from([two_token([0.6, 0.7, 0.55])], [[1, 0, 1]], force_all=True)
    for policy in (ThresholdPolicy(0.99), FactorPolicy(0.1), EntropyBoundPolicy(0.0)):
        assert committed(policy.select(st)) == [[0, 2]]


def test_factor_rule_hand_computed():
    # sorted confidences 0.99, 0.9, 0.8, 0.55: (n+1)(1-c_n) = 0.02, 0.3, 0.8, 2.25
    st = state_from([two_token([0.8, 0.55, 0.99, 0.9])], [[1, 1, 1, 1]])
    assert committed(FactorPolicy(1.0).select(st)) == [[0, 2, 3]]
    assert committed(FactorPolicy(0.5).select(st)) == [[2, 3]]
    assert committed(FactorPolicy(0.3).select(st)) == [[2]]  # 0.3 < 0.3 fails: strict
    assert committed(FactorPolicy(0.01).select(st)) == [[2]]  # always the top-1


def test_entropy_bound_hand_computed():
    # entropies: 0, ln 2 = 0.693, 0, H(0.9, 0.1) = 0.325
    probs = [[[1.0, 0.0], [0.5, 0.5], [1.0, 0.0], [0.9, 0.1]]]
    st = state_from(probs, [[1, 1, 1, 1]])
    # k lowest while sum of all but the largest <= gamma: k=3 -> 0 + 0; k=4 -> 0.325
    assert committed(EntropyBoundPolicy(0.1).select(st)) == [[0, 2, 3]]
    assert committed(EntropyBoundPolicy(0.33).select(st)) == [[0, 1, 2, 3]]
    st = state_from(probs, [[0, 1, 0, 1]])
    assert committed(EntropyBoundPolicy(0.0).select(st)) == [[3]]


def test_alg_temp_samples_positions_from_the_softmax_of_scores():
    # two positions with confidence 0.75 / 0.25 and alg_temp = 1: softmax picks position 0
    # with probability e^0.75 / (e^0.75 + e^0.25) = 0.6225 (one draw per row, 4000 rows)
    n = 4000
    st = state_from(
        [two_token([0.75, 0.25])] * n,
        [[1, 1]] * n,
        counts=[1] * n,
        tokens=[[0, 0]] * n,
        generator=torch.Generator().manual_seed(0),
    )
    sel = ConfidencePolicy(alg_temp=1.0).select(st)
    assert sel.commit.sum(-1).tolist() == [1] * n
    freq = sel.commit[:, 0].float().mean().item()
    want = math.exp(0.75) / (math.exp(0.75) + math.exp(0.25))
    assert abs(freq - want) < 0.025
    # a tiny alg_temp is the top-1
    sel = ConfidencePolicy(alg_temp=1e-4).select(st)
    assert sel.commit[:, 0].all()


def test_random_commits_exact_counts_among_masked_and_follows_the_seed():
    n = 200
    masked = [[1, 0, 1, 1, 1, 0]] * n

    def run(seed):
        st = state_from(
            [two_token([0.5] * 6)] * n, masked, counts=[2] * n, generator=torch.Generator().manual_seed(seed)
        )
        return RandomPolicy().select(st).commit

    a, b, c = run(1), run(1), run(2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.sum(-1).tolist() == [2] * n
    assert not (a[:, 1] | a[:, 5]).any()
    assert (a[:, [0, 2, 3, 4]].float().mean(0) > 0.35).all()  # each of 4 masked ~ 0.5


def test_learned_policy_bernoulli_forcing_and_logprob():
    def fn(f):
        assert f.masked.shape == (2, 4) and f.confidence.shape == (2, 4)
        assert f.block.tolist() == [True, True, True, False]
        return torch.tensor([[0.9, 0.2, 0.6, 1.0], [0.3, 0.4, 0.1, 1.0]])

    masked = torch.tensor([[1, 1, 0], [1, 1, 1]], dtype=torch.bool)
    st = state_from(
        [two_token([0.5] * 3)] * 2,
        masked.int().tolist(),
        completion_masked=torch.ones(2, 4, dtype=torch.bool),
        completion_confidence=torch.full((2, 4), 0.5),
    )
    sel = LearnedPolicy(fn, deterministic=True).select(st)
    # row 0: p >= 0.5 at 0 (and 2, not masked); row 1 selects nothing -> forced to its best (1)
    assert committed(sel) == [[0], [1]]
    assert sel.info["forced"].tolist() == [False, True]
    want0 = math.log(0.9) + math.log(0.8)  # position 2 is not masked: not part of the action
    want1 = math.log(0.7) + math.log(0.6) + math.log(0.9)
    assert sel.info["logprob"].tolist() == pytest.approx([want0, want1], abs=1e-5)
    assert sel.info["action"][1].tolist() == [False] * 4
    # without forcing an empty action is allowed
    sel = LearnedPolicy(fn, deterministic=True, force_nonempty=False).select(st)
    assert committed(sel) == [[0], []]
    # beta scales the probabilities: row 1 0.3 * 2 = 0.6 >= 0.5
    sel = LearnedPolicy(fn, deterministic=True, beta=2.0).select(st)
    assert committed(sel) == [[0], [0, 1]]  # row 0: 0.2 * 2 = 0.4 < 0.5


def test_learned_policy_samples_with_its_probabilities():
    n = 3000
    st = state_from(
        [two_token([0.5, 0.5])] * n,
        [[1, 1]] * n,
        generator=torch.Generator().manual_seed(0),
        completion_masked=torch.ones(n, 2, dtype=torch.bool),
        completion_confidence=torch.zeros(n, 2),
    )
    sel = LearnedPolicy(lambda f: torch.tensor([0.0, 0.3]).expand(n, 2), force_nonempty=False).select(st)
    assert not sel.commit[:, 0].any()
    assert abs(sel.commit[:, 1].float().mean().item() - 0.3) < 0.03


def test_registry_aliases_and_did_you_mean():
    assert policy_class("low_confidence") is ConfidencePolicy
    assert policy_class("maskgit_plus") is ConfidencePolicy
    assert policy_class("topk_margin") is MarginPolicy
    assert policy_class("origin") is RandomPolicy
    assert policy_class("EB") is EntropyBoundPolicy
    with pytest.raises(ValueError, match="did you mean 'threshold'"):
        policy_class("treshold")
    with pytest.raises(ValueError, match="LearnedPolicy"):
        DecodeConfig(policy="learned")


def test_make_policy_passes_the_policy_options():
    assert make_policy("threshold", threshold=0.7).threshold == 0.7
    assert make_policy("factor", factor=2.0).factor == 2.0
    assert make_policy("entropy-bound", gamma=0.3).gamma == 0.3
    assert make_policy("margin", alg_temp=0.5).alg_temp == 0.5
    config = DecodeConfig(policy="threshold", policy_options={"threshold": 0.7})
    assert config.make_policy().threshold == 0.7


@pytest.mark.parametrize(
    "name, options, match",
    [
        ("threshold", {"thresold": 0.8}, "has no option 'thresold'; did you mean 'threshold'"),
        ("confidence", {"threshold": 0.8}, r"'confidence' has no option 'threshold'.*alg_temp"),
        ("threshold", {"threshold": 1.5}, r"threshold must lie in \(0, 1\]"),
        ("factor", {"factor": 0}, "factor must be > 0"),
        ("entropy-bound", {"gamma": -1}, "gamma must be >= 0"),
        ("margin", {"alg_temp": 0}, "alg_temp must be > 0"),
    ],
)
def test_bad_policy_options_are_named(name, options, match):
    with pytest.raises(ValueError, match=match):
        DecodeConfig(policy=name, policy_options=options)


def test_options_with_a_policy_instance_are_refused():
    with pytest.raises(ValueError, match="given with a policy instance"):
        DecodeConfig(policy=ConfidencePolicy(), policy_options={"alg_temp": 0.5})


def test_former_fields_are_read_as_policy_options_with_a_warning():
    with pytest.warns(DeprecationWarning, match="policy_options"):
        config = DecodeConfig.from_dict({"policy": "threshold", "threshold": 0.8})
    assert config.policy_options == {"threshold": 0.8}
    with pytest.raises(ValueError, match="unknown key 'tresh'"):
        DecodeConfig.from_dict({"tresh": 0.8})


class _ProposeNothing(AdaptivePolicy):
    """Proposes no commit; scores are the position index (the rightmost masked is best)."""

    def __init__(self, empty_ok: bool = False) -> None:
        self.empty_ok = empty_ok

    def allows_empty_steps(self) -> bool:
        return self.empty_ok

    def propose(self, state: StepState) -> Selection:
        a, s = state.masked.shape
        return Selection(torch.zeros_like(state.masked), torch.arange(s, dtype=torch.float32).expand(a, s))


def test_the_adaptive_base_commits_at_least_one_and_everything_at_the_cap():
    # row 0: positions 0, 1, 3 masked -> the best-scored masked one is 3; row 1: nothing masked
    st = state_from([two_token([0.5] * 4)] * 2, [[True, True, False, True], [False] * 4])
    assert committed(_ProposeNothing().select(st)) == [[3], []]
    assert committed(_ProposeNothing(empty_ok=True).select(st)) == [[], []]
    st.force_all = True
    assert committed(_ProposeNothing().select(st)) == [[0, 1, 3], []]
    assert committed(_ProposeNothing(empty_ok=True).select(st)) == [[0, 1, 3], []]


def test_a_proposal_outside_the_mask_is_not_committed():
    class ProposeAll(_ProposeNothing):
        def propose(self, state):
            sel = super().propose(state)
            return Selection(torch.ones_like(state.masked), sel.scores)

    st = state_from([two_token([0.5] * 3)], [[False, True, False]])
    assert committed(ProposeAll().select(st)) == [[1]]
