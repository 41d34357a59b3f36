"""Token choice: filters, temperature, Gumbel-max sampling from an explicit generator."""

import math

import pytest
import torch

from demask.decoding import choose_tokens, filter_logits

LOGP = torch.tensor([0.5, 0.3, 0.15, 0.05]).log()


def kept(logits):
    return torch.isfinite(logits).nonzero().flatten().tolist()


def test_top_k_keeps_the_k_largest():
    assert kept(filter_logits(LOGP[[2, 0, 3, 1]], top_k=2)) == [1, 3]
    assert kept(filter_logits(LOGP, top_k=10)) == [0, 1, 2, 3]


@pytest.mark.parametrize("top_p, n", [(0.3, 1), (0.7, 2), (0.85, 3), (0.97, 4), (1.0, 4)])
def test_top_p_keeps_the_token_that_crosses_the_mass(top_p, n):
    # cumulative mass 0.5, 0.8, 0.95, 1.0: the nucleus ends with the first token reaching top_p
    assert kept(filter_logits(LOGP, top_p=top_p)) == list(range(n))


def test_argmax_at_temperature_zero_with_untempered_probs():
    logits = torch.tensor([[1.0, 3.0, 2.0], [0.0, 0.0, 5.0]])
    tokens, probs = choose_tokens(logits)
    assert tokens.tolist() == [1, 2]
    assert torch.allclose(probs, logits.softmax(-1))


def test_temperature_reshapes_the_probs_the_policies_read():
    logits = torch.tensor([[1.0, 3.0, 2.0]])
    _, probs = choose_tokens(logits, temperature=2.0, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(probs, (logits / 2).softmax(-1))
    _, probs = choose_tokens(logits, top_k=1)
    assert probs.tolist() == [[0.0, 1.0, 0.0]]


def test_gumbel_sampling_matches_the_categorical_and_the_seed():
    n = 20000
    logits = torch.tensor([0.0, math.log(2.0), math.log(5.0)]).expand(n, 3)  # p = 1/8, 2/8, 5/8
    a, _ = choose_tokens(logits, temperature=1.0, generator=torch.Generator().manual_seed(5))
    b, _ = choose_tokens(logits, temperature=1.0, generator=torch.Generator().manual_seed(5))
    c, _ = choose_tokens(logits, temperature=1.0, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    freq = torch.bincount(a, minlength=3).float() / n
    assert freq.tolist() == pytest.approx([1 / 8, 2 / 8, 5 / 8], abs=0.012)
    # temperature 0.5 squares the odds: p ~ 1, 4, 25
    d, _ = choose_tokens(logits, temperature=0.5, generator=torch.Generator().manual_seed(5))
    freq = torch.bincount(d, minlength=3).float() / n
    assert freq.tolist() == pytest.approx([1 / 30, 4 / 30, 25 / 30], abs=0.012)


def test_filtered_tokens_are_never_sampled():
    n = 5000
    logits = torch.tensor([0.0, 0.5, 0.1, 0.4, 0.2, 0.3]).expand(n, 6)
    tokens, _ = choose_tokens(logits, temperature=1.0, top_k=2, generator=torch.Generator().manual_seed(0))
    assert set(tokens.tolist()) == {1, 3}
    tokens, _ = choose_tokens(LOGP.expand(n, 4), temperature=1.0, top_p=0.7, generator=torch.Generator().manual_seed(0))
    assert set(tokens.tolist()) == {0, 1}
    # ties with the k-th value are kept (as in transformers)
    assert kept(filter_logits(torch.zeros(6), top_k=2)) == list(range(6))
