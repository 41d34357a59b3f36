"""The decoding -> Sampler adapter: its own logic on a stub engine, then on the real one."""

from types import SimpleNamespace

import pytest
import torch

import demask.decoding
from demask.decoding import DecodeConfig, generate
from demask.decoding.mock import tiny_transformer
from demask.evaluation.sampler import _combined_seed, decoding_sampler


class CharTokenizer:
    """ids = character codes - 97 (a..z -> 0..25); decode maps back."""

    def encode(self, text):
        return [(ord(c) - 97) % 26 for c in text]

    def decode(self, ids):
        return "".join(chr(97 + i % 26) for i in ids)


class StubModel:
    def parameters(self):
        return iter([torch.zeros(1)])


def test_adapter_logic_with_a_stub_engine(monkeypatch):
    calls = []

    def fake_generate(model, prompt_ids, config, generator=None):
        seed = generator.initial_seed()
        calls.append((prompt_ids, config, seed))
        # completion: the prompt reversed, cut to `seed % 3 + 1` tokens; nfe = 10 * row + 1
        return SimpleNamespace(
            completions=[list(reversed(p))[: seed % 3 + 1] for p in prompt_ids],
            nfe=[10 * r + 1 for r in range(len(prompt_ids))],
        )

    monkeypatch.setattr(demask.decoding, "generate", fake_generate)
    config = object()
    tok = CharTokenizer()

    batched = decoding_sampler(StubModel(), tok, config)
    out = batched(["abc", "xyz"], [5, 9])
    assert len(calls) == 1 and calls[0][0] == [[0, 1, 2], [23, 24, 25]] and calls[0][1] is config
    seed = _combined_seed([5, 9])
    assert calls[0][2] == seed
    keep = seed % 3 + 1
    assert [o.completion for o in out] == ["cba"[:keep], "zyx"[:keep]]
    assert [o.num_tokens for o in out] == [keep, keep] and [o.nfe for o in out] == [1, 11]
    assert out[0].seconds == out[1].seconds >= 0.0

    calls.clear()
    per_row = decoding_sampler(StubModel(), tok, config, batched=False)
    out = per_row(["abc", "xyz"], [5, 9])
    assert [(c[0], c[2]) for c in calls] == [([[0, 1, 2]], 5), ([[23, 24, 25]], 9)]
    assert [o.completion for o in out] == ["cba"[: 5 % 3 + 1], "zyx"[: 9 % 3 + 1]]
    assert [o.nfe for o in out] == [1, 1]

    with pytest.raises(ValueError, match="2 prompts but 1 seeds"):
        batched(["a", "b"], [1])


def test_with_the_real_engine():
    model = tiny_transformer(vocab_size=48)
    config = DecodeConfig(gen_length=4, temperature=1.0)
    tok = CharTokenizer()
    per_row = decoding_sampler(model, tok, config, batched=False)
    a = per_row(["abc", "hello"], [11, 22])
    b = per_row(["hello", "abc"], [22, 11])  # another batch, the same (prompt, seed) pairs
    assert [o.completion for o in a] == [b[1].completion, b[0].completion]
    direct = generate(model, [tok.encode("abc")], config, generator=torch.Generator().manual_seed(11))
    assert a[0].completion == tok.decode(direct.completions[0])
    assert a[0].num_tokens == len(direct.completions[0]) and a[0].nfe == direct.nfe[0] > 0

    batched = decoding_sampler(model, tok, config)
    assert [o.completion for o in batched(["abc", "hello"], [11, 22])] == [
        o.completion for o in batched(["abc", "hello"], [11, 22])
    ]


def test_evaluate_end_to_end_with_the_real_engine(tmp_path):
    from test_evaluation_fake import best_sandbox

    from demask.evaluation import evaluate
    from demask.tasks.base import Task

    sampler = decoding_sampler(
        tiny_transformer(vocab_size=48), CharTokenizer(), DecodeConfig(gen_length=4, temperature=1.0)
    )
    tasks = [Task("A/0", "def f():\n", ("assert f() == 1",), "f")]
    with best_sandbox(workers=1, timeout_s=5.0) as sb:
        res = evaluate(tasks, sampler, 3, tmp_path, sb, batch_size=2)
    assert res["num_samples"] == 3 and res["tasks"]["A/0"]["c"] == 0  # random letters never pass
    assert res["generation"]["mean_nfe"] > 0
