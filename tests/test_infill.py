"""Fill-in-the-middle: the batch layout with a suffix, the decoder sees the suffix and never
changes it, the facade returns only the middle, TinyCode-infill tasks and the HumanEval-infilling
loader."""

from __future__ import annotations

import gzip
import json

import pytest
import torch

import demask
from demask.decoding import DecodeConfig, generate
from demask.decoding.batch import build_batch
from demask.decoding.mock import ScriptedModel
from demask.model.config import ModelConfig
from demask.tasks import load_tasks
from demask.tasks.infill import infill_task, load_humaneval_infilling, tinycode_infill

V, MASK, PAD, EOS = 12, 11, 10, 9


def test_batch_layout_left_pads_prompts_and_right_pads_suffixes():
    b = build_batch([[1, 2], [3]], 2, MASK, PAD, suffixes=[[4], [5, 6]])
    assert b.tokens.tolist() == [[1, 2, MASK, MASK, 4, PAD], [PAD, 3, MASK, MASK, 5, 6]]
    assert b.attention.tolist() == [[True] * 5 + [False], [False] + [True] * 5]
    assert b.positions[1].tolist() == [0, 0, 1, 2, 3, 4] and b.prompt_length == 2 and b.has_padding
    with pytest.raises(ValueError, match="one per prompt"):
        build_batch([[1]], 2, MASK, PAD, suffixes=[[4], [5]])
    with pytest.raises(ValueError, match="longest suffix"):
        build_batch([[1]], 2, MASK, PAD, max_length=4, suffixes=[[4, 5]])


def _echo_last_model(shifted: bool = False) -> ScriptedModel:
    """Every position predicts the last token of the row it is given: the suffix's last."""
    cfg = ModelConfig(vocab_size=V, hidden_size=8, num_layers=1, num_heads=1, num_kv_heads=1,
                      mask_token_id=MASK, pad_token_id=PAD, eos_token_id=EOS, shift_logits=shifted)  # fmt: skip

    def fn(ids: torch.Tensor, positions: torch.Tensor, call: int) -> torch.Tensor:
        logits = torch.zeros(ids.shape[0], ids.shape[1], V)
        logits[torch.arange(ids.shape[0]), :, ids[:, -1]] = 5.0
        logits[..., EOS] = 4.0  # an end token the middle must never take
        return logits

    return ScriptedModel(cfg, fn)


@pytest.mark.parametrize("shifted", [False, True])
def test_the_middle_sees_the_suffix_and_the_suffix_is_kept(shifted):
    model = _echo_last_model(shifted)
    config = DecodeConfig(gen_length=3, policy="confidence", cache="none")
    out = generate(model, [[1, 2], [3]], config, suffixes=[[4, 7], [8, 6]])
    assert out.completions == [[7, 7, 7], [6, 6, 6]]  # exactly gen_length tokens, no end token
    p = out.prompt_length
    assert out.tokens[:, p + 3 :].tolist() == [[4, 7], [8, 6]]


def test_models_that_cannot_see_a_suffix_are_refused():
    for name in ("tinycode-block", "tinycode-ar"):
        llm = demask.load(name)
        with pytest.raises(ValueError, match="sees the suffix"):
            llm.infill("def f(n):\n", "    return n\n", max_new_tokens=4)


@pytest.fixture(scope="module")
def mdm():
    return demask.load("tinycode-mdm")


def test_facade_returns_the_middle_only(mdm):
    pre, suf = 'def f(n):\n    """Add 1."""\n', "    return n\n"
    middle = mdm.infill(pre, suf, max_new_tokens=6)
    assert isinstance(middle, str) and not middle.startswith(pre)
    both = mdm.infill([pre, pre], [suf, "    return 0\n"], lengths=[2, 4, 6])
    assert isinstance(both, list) and len(both) == 2
    with pytest.raises(TypeError, match="two str"):
        mdm.infill(pre, [suf])
    with pytest.raises(ValueError, match="context"):
        mdm.infill(pre, suf, max_new_tokens=500)
    with pytest.raises(ValueError, match="score"):
        mdm.infill(pre, suf, score="max")
    chosen = mdm.infill(pre, suf, lengths=[2, 4, 6])  # one of the fixed-length answers
    assert chosen in [mdm.infill(pre, suf, max_new_tokens=m) for m in (2, 4, 6)]


def test_tinycode_infill_tasks_reassemble_and_their_references_pass():
    from demask.execution import Sandbox, SandboxConfig

    tasks = load_tasks("tinycode:validation")[:12]
    programs = []
    for mode in ("line", "span"):
        for task in tasks:
            it = infill_task(task, mode)
            assert it.program(it.middle) == task.prompt + task.canonical_solution
            assert it.middle.strip() and it.task_id.endswith(mode)
            assert infill_task(task, mode) == it  # a pure function of the task and seed
            programs.append(it.as_task().program(it.middle + it.suffix))
    assert len(tinycode_infill("validation", "span")) == len(load_tasks("tinycode:validation"))
    with Sandbox(SandboxConfig(workers=2, timeout_s=3.0)) as sandbox:
        results = dict(sandbox.run_many(programs))
    assert len(results) == 24 and all(r.passed for r in results.values())


def test_humaneval_infilling_loader_reads_the_file_format(tmp_path):
    rows = [{"task_id": "SingleLineInfilling/HumanEval/0/L0", "entry_point": "inc", "prompt": "def inc(x):\n",
             "suffix": "    return y\n", "canonical_solution": "    y = x + 1\n",
             "test": "def check(f):\n    assert f(1) == 2\n"}]  # fmt: skip
    path = tmp_path / "HumanEval-SingleLineInfilling.jsonl.gz"
    with gzip.open(path, "wt") as f:
        f.write("\n".join(json.dumps(r) for r in rows) + "\n")
    (task,) = load_humaneval_infilling(path)
    assert task.program(task.middle) == "def inc(x):\n    y = x + 1\n    return y\n"
    assert task.tests[0].endswith("check(inc)\n")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"task_id": "x"}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        load_humaneval_infilling(bad)
    with pytest.raises(FileNotFoundError, match="human-eval-infilling"):
        load_humaneval_infilling(tmp_path / "missing.jsonl")


@pytest.mark.parametrize("cache", ["none", "prefix", "dual"])
def test_every_cache_mode_keeps_the_suffix_and_policies_see_only_the_middle(cache):
    from demask.decoding.policies import LearnedPolicy

    seen = []

    def fn(features):
        seen.append(features.masked.shape[1])
        return features.confidence

    model = _echo_last_model(shifted=True)
    config = DecodeConfig(gen_length=4, block_length=2, policy=LearnedPolicy(fn), cache=cache)
    out = generate(model, [[1, 2], [3]], config, suffixes=[[4, 7, 5], [8]])
    assert [len(c) for c in out.completions] == [4, 4]
    p = out.prompt_length
    assert out.tokens[0, p + 4 :].tolist() == [4, 7, 5] and out.tokens[1, p + 4 :].tolist() == [8, PAD, PAD]
    assert seen and set(seen) == {4}


def test_training_layout_end_token_and_padding(mdm):
    """The suffix gets the end token and pads up to the layout (no further than the context);
    token-id inputs are taken as they are."""
    calls = []
    real = demask.api.LLM._infill_groups

    def spy(self, pre, suf, m, rows):
        calls.append((m, [list(suf[i]) for i in rows]))
        return real(self, pre, suf, m, rows)

    demask.api.LLM._infill_groups = spy
    try:
        eos, pad = mdm.config.eos_token_id, mdm.config.pad_token_id
        mdm.infill([5, 6, 7], [8, 9], max_new_tokens=3, layout=10)
        assert calls[-1] == (3, [[8, 9, eos] + [pad] * 4])  # 3 + 3 + 4 = 10 after the prefix
        mdm.infill([5, 6, 7], [8, 9], max_new_tokens=3, end=False)
        assert calls[-1] == (3, [[8, 9]])
        assert mdm.completion_length == 48  # the shipped recipe's, the default layout
    finally:
        demask.api.LLM._infill_groups = real


def test_token_inputs_tokenize_prompt_and_solution_apart():
    tok = demask.load("tinycode-mdm").tokenizer
    task = tinycode_infill("validation", "line")[1]
    pre, suf, before = task.token_inputs(tok)
    prompt = task.prefix[: task.prompt_chars]
    assert pre[: len(tok.encode(prompt))] == tok.encode(prompt) and len(pre) == len(tok.encode(prompt)) + before
    assert tok.decode(pre) + task.middle + tok.decode(suf) == task.prefix + task.middle + task.suffix
