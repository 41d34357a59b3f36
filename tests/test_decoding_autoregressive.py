"""Autoregressive decoding of causal models through generate()."""

import pytest
import torch

from demask.analysis import global_arness, local_arness, trace_arness
from demask.decoding import DecodeConfig, generate
from demask.decoding.mock import tiny_transformer


@pytest.fixture(scope="module")
def causal_model():
    return tiny_transformer(causal=True, seed=4)


def naive_ar(model, prompt, gen_length, end_ids=()):
    """Greedy decoding, recomputing the whole prefix every step, no cache, no batch."""
    x = list(prompt)
    out = []
    for _ in range(gen_length):
        with torch.no_grad():
            logits = model(torch.tensor([x]))[0, -1]
        t = int(logits.argmax())
        x.append(t)
        if t in end_ids:
            break
        out.append(t)
    return out


PROMPTS = [[5, 6, 7, 8, 9], [10, 11], [3, 4, 5, 6, 7, 8, 9, 12]]


@pytest.mark.parametrize("cache", ["prefix", "none"])
def test_cached_batched_ar_equals_the_naive_loop(causal_model, cache):
    ends = (causal_model.config.eos_token_id, causal_model.config.pad_token_id)
    out = generate(causal_model, PROMPTS, DecodeConfig(gen_length=20, cache=cache))
    for i, prompt in enumerate(PROMPTS):
        want = naive_ar(causal_model, prompt, 20, ends)
        assert out.completions[i] == want
        stopped = len(want) < 20
        assert out.nfe[i] == len(want) + 1 if stopped else out.nfe[i] == 20


def test_ar_without_early_stop_runs_every_step_and_is_ar_by_construction(causal_model):
    out = generate(
        causal_model, PROMPTS, DecodeConfig(gen_length=12, trace=True, early_stop=False, temperature=1.0, seed=0)
    )
    assert out.nfe == [12, 12, 12]
    arness = trace_arness(out.trace, k=3)
    assert arness == {"local": [1.0] * 3, "global": [1.0] * 3}
    for i in range(3):
        row = out.trace.row(i)
        assert row.order() == list(range(12))
        assert local_arness(row.step_groups(), 1) == global_arness(row.step_groups(), 1) == 1.0
        assert [s.tokens[0] for s in row.steps] == out.tokens[i, out.prompt_length :].tolist()


def test_ar_sampling_follows_the_seed_and_fills_after_the_end(causal_model):
    cfg = DecodeConfig(gen_length=16, temperature=1.0, top_k=8)
    a = generate(causal_model, PROMPTS, cfg, generator=torch.Generator().manual_seed(1))
    b = generate(causal_model, PROMPTS, cfg, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a.tokens, b.tokens) and a.nfe == b.nfe
    ends = {causal_model.config.eos_token_id, causal_model.config.pad_token_id}
    for i, c in enumerate(a.completions):
        rest = a.tokens[i, a.prompt_length + len(c) :].tolist()
        assert len(set(rest)) <= 1 and (not rest or rest[0] in ends)


def test_ar_refuses_an_unshifted_causal_model():
    model = tiny_transformer(causal=True)
    model.config.shift_logits = False
    with pytest.raises(ValueError, match="shift_logits"):
        generate(model, [[1, 2]], DecodeConfig(gen_length=4))
