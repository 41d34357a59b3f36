"""The denoising loop on a small random Transformer (fp32) and on scripted mock models."""

import pytest
import torch

from demask.decoding import DecodeConfig, LearnedPolicy, generate, llada_split
from demask.decoding.mock import ScriptedModel, mock_config, tiny_transformer
from demask.model.transformer import token_logits

PROMPTS = [[5, 6, 7, 8, 9], [10, 11], [3, 4, 5, 6, 7, 8, 9]]
POLICIES = [
    ("confidence", {}),
    ("margin", {}),
    ("entropy", {}),
    ("left-to-right", {}),
    ("threshold", {"threshold": 0.5}),
    ("factor", {"factor": 2.0}),
    ("entropy-bound", {"gamma": 1.0}),
]


@pytest.fixture(scope="module")
def shifted_model():
    return tiny_transformer(shifted=True)


@pytest.fixture(scope="module")
def unshifted_model():
    return tiny_transformer(shifted=False, seed=1)


def naive_decode(model, prompt, gen_length, block_length, steps, policy="confidence", tau=0.9):
    """The plain loop, one row, written as directly as possible (LLaDA's structure)."""
    cfg = model.config
    x = torch.tensor([list(prompt) + [cfg.mask_token_id] * gen_length])
    p = len(prompt)
    n_blocks = gen_length // block_length
    nfe = 0
    for blk in range(n_blocks):
        lo, hi = p + blk * block_length, p + (blk + 1) * block_length
        counts = llada_split(block_length, steps // n_blocks)
        for k in counts:
            with torch.no_grad():
                logits = token_logits(model(x), cfg.shift_logits)[0]
            logits[:, cfg.mask_token_id] = float("-inf")
            nfe += 1
            probs = logits.float().softmax(-1)
            x0 = probs.argmax(-1)
            conf = probs.gather(-1, x0[:, None]).squeeze(-1)
            masked = x[0] == cfg.mask_token_id
            cand = [i for i in range(lo, hi) if masked[i]]
            ranked = sorted(cand, key=lambda i: (-conf[i].item(), i))
            if policy == "threshold":
                chosen = [i for i in cand if conf[i] >= tau] or ranked[:1]
            else:
                chosen = ranked[:k]
            for i in chosen:
                x[0, i] = x0[i]
            if policy == "threshold" and not (x[0, lo:hi] == cfg.mask_token_id).any():
                break
        if policy == "threshold":
            while (x[0, lo:hi] == cfg.mask_token_id).any():
                raise AssertionError("threshold left masks")  # pragma: no cover
    return x[0, p:].tolist(), nfe


@pytest.mark.parametrize("shifted", [True, False])
@pytest.mark.parametrize("block_length, steps", [(16, 16), (4, 8), (8, 16)])
def test_cache_off_equals_the_naive_loop_bit_for_bit(shifted, block_length, steps, shifted_model, unshifted_model):
    model = shifted_model if shifted else unshifted_model
    cfg = DecodeConfig(gen_length=16, block_length=block_length, steps=steps, early_stop=False)
    out = generate(model, PROMPTS, cfg)
    for i, prompt in enumerate(PROMPTS):
        tokens, nfe = naive_decode(model, prompt, 16, block_length, steps)
        assert out.tokens[i, out.prompt_length :].tolist() == tokens
        assert out.nfe[i] == nfe


def test_threshold_equals_the_naive_threshold_loop(shifted_model):
    cfg = DecodeConfig(
        gen_length=16, block_length=8, policy="threshold", policy_options={"threshold": 0.5}, early_stop=False
    )
    out = generate(shifted_model, PROMPTS, cfg)
    for i, prompt in enumerate(PROMPTS):
        tokens, nfe = naive_decode(shifted_model, prompt, 16, 8, 16, policy="threshold", tau=0.5)
        assert out.tokens[i, out.prompt_length :].tolist() == tokens
        assert out.nfe[i] == nfe


@pytest.mark.parametrize("cache", ["none", "prefix", "dual"])
@pytest.mark.parametrize("policy, knobs", POLICIES)
def test_batch_rows_are_independent_and_left_padding_changes_nothing(policy, knobs, cache, shifted_model):
    """Argmax decoding: a batch of 3 (left-padded) gives exactly each prompt decoded alone."""
    cfg = DecodeConfig(gen_length=16, block_length=8, policy=policy, cache=cache, policy_options=knobs)
    together = generate(shifted_model, PROMPTS, cfg)
    for i, prompt in enumerate(PROMPTS):
        alone = generate(shifted_model, [prompt], cfg)
        assert together.completions[i] == alone.completions[0]
        assert together.nfe[i] == alone.nfe[0]


def test_unshifted_rows_are_independent_too(unshifted_model):
    cfg = DecodeConfig(
        gen_length=16, block_length=4, policy="threshold", policy_options={"threshold": 0.5}, cache="dual"
    )
    together = generate(unshifted_model, PROMPTS, cfg)
    for i, prompt in enumerate(PROMPTS):
        assert together.completions[i] == generate(unshifted_model, [prompt], cfg).completions[0]


@pytest.mark.parametrize("cache", ["none", "prefix", "dual"])
@pytest.mark.parametrize("policy, knobs", [*POLICIES, ("random", {})])
def test_no_commit_lands_outside_the_current_block(policy, knobs, cache, shifted_model):
    cfg = DecodeConfig(
        gen_length=16,
        block_length=4,
        policy=policy,
        cache=cache,
        trace=True,
        temperature=1.0,
        early_stop=False,
        seed=3,
        policy_options=knobs,
    )
    out = generate(shifted_model, PROMPTS, cfg)
    for i in range(len(PROMPTS)):
        when = out.trace.row(i).commit_steps()
        assert min(when) >= 0  # every position committed exactly once
        for blk in range(1, 4):
            prev, cur = when[(blk - 1) * 4 : blk * 4], when[blk * 4 : (blk + 1) * 4]
            assert max(prev) < min(cur)  # block b starts only once block b-1 is done


@pytest.mark.parametrize("policy, knobs", [*POLICIES, ("random", {})])
def test_same_seed_same_output_and_other_seeds_differ(policy, knobs, shifted_model):
    cfg = DecodeConfig(
        gen_length=16,
        block_length=8,
        policy=policy,
        temperature=1.0,
        top_p=0.95,
        policy_options={**knobs, **({"alg_temp": 0.5} if policy in ("confidence", "margin") else {})},
    )
    runs = [generate(shifted_model, PROMPTS, cfg, generator=torch.Generator().manual_seed(s)) for s in (7, 7, 8)]
    assert runs[0].completions == runs[1].completions and runs[0].nfe == runs[1].nfe
    assert torch.equal(runs[0].tokens, runs[1].tokens)
    assert runs[0].completions != runs[2].completions
    # config.seed is the same thing
    a = generate(shifted_model, PROMPTS, cfg.replace(seed=7))
    assert a.completions == runs[0].completions


def test_trace_is_none_when_off_and_complete_when_on(shifted_model):
    cfg = DecodeConfig(
        gen_length=16, block_length=8, policy="threshold", policy_options={"threshold": 0.5}, early_stop=False
    )
    assert generate(shifted_model, PROMPTS, cfg).trace is None
    out = generate(shifted_model, PROMPTS, cfg.replace(trace=True))
    for i in range(len(PROMPTS)):
        row = out.trace.row(i)
        assert sorted(row.order()) == list(range(16))
        assert [s.nfe for s in row.steps] == list(range(1, out.nfe[i] + 1))
        tokens = out.tokens[i, out.prompt_length :]
        for s in row.steps:
            assert s.tokens == tokens[s.positions].tolist()
            assert all(0 < c <= 1 for c in s.confidences)


# ---------------------------------------------------------------- early stop
def chain_model(vocab=16, stop_after=(7,), shifted=False):
    """Deterministic, row-independent, and only looks left: position i predicts
    (x[i-1] + 1) with high confidence when x[i-1] is known, EOS after a token in
    ``stop_after``, and a weak guess when x[i-1] is masked. Nothing right of an end
    token can change what is left of it, so early stop is provably output-preserving."""
    cfg = mock_config(vocab, shifted=shifted)
    mask, eos = cfg.mask_token_id, cfg.eos_token_id

    def fn(ids, absolute, call):
        b, s = ids.shape
        logits = torch.zeros(b, s, vocab)
        for j in range(s):
            if shifted:  # column j predicts the next token from the token at j
                left = ids[:, j]
            else:
                left = ids[:, j - 1] if j > 0 else torch.full((b,), 1)
            for r in range(b):
                t = int(left[r])
                if t == mask:
                    logits[r, j, 2] = 0.5
                elif t in stop_after:
                    logits[r, j, eos] = 6.0
                else:
                    logits[r, j, 1 + (t % 10)] = 6.0
        return logits

    return ScriptedModel(cfg, fn)


@pytest.mark.parametrize("shifted", [False, True])
@pytest.mark.parametrize("policy", ["confidence", "threshold"])
def test_early_stop_equals_decoding_to_the_end_and_rows_leave_the_batch(policy, shifted):
    prompts = [[4, 5], [1], [8, 9, 2], [3]]  # 6 7 | 2 3 4 5 6 7 | 3 4 5 6 7 | 4 5 6 7, then EOS
    if shifted:
        prompts = [[1, *p] for p in prompts]  # a shifted model needs the token left of each slice
    cfg = DecodeConfig(gen_length=12, policy=policy, trace=True)
    full = generate(chain_model(shifted=shifted), prompts, cfg.replace(early_stop=False))
    model = chain_model(shifted=shifted)
    stop = generate(model, prompts, cfg)
    assert stop.completions == full.completions
    assert [len(c) for c in stop.completions] == [2, 6, 5, 4]
    assert all(s < f for s, f in zip(stop.nfe, full.nfe))
    assert stop.nfe == [len(c) + 1 for c in stop.completions]
    # every forward ran only the rows that had not stopped
    sizes = [c.input_ids.shape[0] for c in model.calls]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] == 4 and sizes[-1] == 1
    assert sum(sizes) == sum(stop.nfe)
    # the rest of a stopped row is the end token
    eos = model.config.eos_token_id
    for i, c in enumerate(stop.completions):
        assert stop.tokens[i, stop.prompt_length + len(c) :].eq(eos).all()
        assert stop.trace.row(i).stopped_at == len(c)


def test_early_stop_keeps_the_sampled_completion_of_a_real_model():
    """One row: the steps up to the stop draw the same noise, so the cut completion is
    the same whatever the model; checked on sampled decodes that do stop early."""
    model = tiny_transformer(vocab_size=12, seed=2)  # EOS/pad are 2 of 12 tokens: frequent
    stopped = 0
    for seed in range(12):
        for policy in ("confidence", "threshold"):
            cfg = DecodeConfig(
                gen_length=24,
                block_length=8,
                policy=policy,
                policy_options={"threshold": 0.5} if policy == "threshold" else {},
                temperature=1.0,
                seed=seed,
            )
            a = generate(model, [[1, 2, 3]], cfg)
            b = generate(model, [[1, 2, 3]], cfg.replace(early_stop=False))
            assert a.completions == b.completions
            assert a.nfe[0] <= b.nfe[0]
            stopped += a.nfe[0] < b.nfe[0]
    assert stopped >= 5


# ---------------------------------------------------------------- caches
def positional_model(shifted, vocab=16):
    """Logits depend only on the absolute position predicted (no attention), so a cached
    slice must give exactly what the full forward gives: checks the slice alignment."""
    cfg = mock_config(vocab, shifted=shifted)
    gen = torch.Generator().manual_seed(0)
    table = torch.randn(64, vocab, generator=gen) * 3
    table[:, cfg.mask_token_id] = -20
    table[:, cfg.eos_token_id] = -20
    table[:, cfg.pad_token_id] = -20

    def fn(ids, absolute, call):
        target = absolute + 1 if shifted else absolute
        return table[target].expand(ids.shape[0], -1, -1).clone()

    return ScriptedModel(cfg, fn)


@pytest.mark.parametrize("shifted", [False, True])
@pytest.mark.parametrize("cache", ["prefix", "dual"])
@pytest.mark.parametrize("policy, knobs", [("confidence", {}), ("threshold", {"threshold": 0.6})])
def test_cached_slices_are_aligned_with_the_positions_they_predict(shifted, cache, policy, knobs):
    prompts = [[1, 2, 3], [4]]
    cfg = DecodeConfig(gen_length=12, block_length=4, policy=policy, trace=True, policy_options=knobs)
    ref = generate(positional_model(shifted), prompts, cfg)
    model = positional_model(shifted)
    out = generate(model, prompts, cfg.replace(cache=cache))
    assert torch.equal(out.tokens, ref.tokens) and out.nfe == ref.nfe
    assert [r.step_groups() for r in out.trace.rows()] == [r.step_groups() for r in ref.trace.rows()]
    # which slices ran: a full refresh at each block start, then [block - shift, end or block end)
    p, t, shift = 3, 15, int(shifted)
    for call in model.calls:
        start, width = call.cache_start, call.input_ids.shape[1]
        if start == 0:
            assert width == t
        else:
            lo = start + shift - p
            assert lo in (0, 4, 8)
            assert start + width == (t if cache == "prefix" else p + lo + 4)
    assert sum(c.cache_start == 0 for c in model.calls) == 3  # one refresh per block


def test_cached_modes_stay_close_to_uncached_on_a_real_model(shifted_model):
    """Not an equality (the cache is stale by design); a sanity check that it decodes."""
    cfg = DecodeConfig(gen_length=16, block_length=4, policy="threshold", policy_options={"threshold": 0.5}, trace=True)
    ref = generate(shifted_model, PROMPTS, cfg)
    for cache in ("prefix", "dual"):
        out = generate(shifted_model, PROMPTS, cfg.replace(cache=cache))
        assert all(1 <= n <= 16 for n in out.nfe)
        # the first step is a full forward in every mode: it commits the same
        first, want = out.trace.steps[0], ref.trace.steps[0]
        assert torch.equal(first.commit, want.commit)
        assert torch.equal(first.tokens[first.commit], want.tokens[want.commit])


# ---------------------------------------------------------------- learned policy
def test_learned_policy_through_the_loop(shifted_model):
    seen = []

    def leftmost(features):
        seen.append(features)
        first = features.masked.float().argmax(-1, keepdim=True)
        return torch.zeros_like(features.confidence).scatter(-1, first, 1.0)

    cfg = DecodeConfig(
        gen_length=8,
        block_length=4,
        policy=LearnedPolicy(leftmost),
        trace=True,
        early_stop=False,
        temperature=1.0,
        seed=0,
    )
    out = generate(shifted_model, PROMPTS, cfg)
    assert all(out.trace.row(i).step_groups() == [[j] for j in range(8)] for i in range(3))
    assert out.nfe == [8, 8, 8]
    assert seen[0].time.tolist() == [1 / 8] * 3 and seen[3].time.tolist() == [4 / 8] * 3
    assert seen[0].confidence.shape == (3, 8) and (seen[0].confidence > 0).all()
    logprobs = out.trace.policy_info("logprob")
    assert len(logprobs) == 8 and all(torch.allclose(v, torch.zeros(3)) for _, v in logprobs)


# ---------------------------------------------------------------- errors
def test_bad_inputs_name_the_fix(shifted_model):
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        generate(shifted_model, [[1], []], DecodeConfig(gen_length=4))
    with pytest.raises(ValueError, match="context of 256"):
        generate(shifted_model, [[1] * 250], DecodeConfig(gen_length=16))
    with pytest.raises(ValueError, match="no prompts"):
        generate(shifted_model, [], DecodeConfig(gen_length=4))
