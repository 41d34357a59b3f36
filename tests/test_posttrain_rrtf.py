"""RRTF / RRHF on the post-training framework: ranking levels, the pair rule, the losses on
hand-computed inputs, sequence scores (exact and shared-draw ELBO), and resume of each stage."""

from __future__ import annotations

import json
import math

import pytest
import torch
from helpers import ROOT, tiny_model

from demask.execution import Sandbox, SandboxConfig
from demask.tasks.base import Task
from demask.training.config import TrainConfig
from demask.training.loop import Callback
from demask.training.posttrain import ALGORITHMS, Algorithm, check_requirements
from demask.training.posttrain.ranking import (
    RRHF,
    RRTF,
    Encoder,
    Item,
    RejectionSampling,
    Response,
    TeacherSFT,
    best_response,
    rank_response,
    ranking_loss,
    rrtf_pairs,
)
from demask.training.posttrain.rrtf import train_ranked
from demask.training.posttrain.scores import ScoreBatch, count_draws, diffusion_draws, sequence_scores
from demask.training.rl.rewards import FormatReward, as_reward, get_reward

TASK = Task(
    "t0",
    "def add_one(xs):\n",
    ("assert add_one([1]) == [2]", "assert add_one([]) == []", "assert add_one([5, 5]) == [6, 6]"),
    "add_one",
)


# ---------------------------------------------------------------------- ranking levels
@pytest.mark.parametrize(
    "body, level, score",
    [
        ("    return [x + 1 for x in xs\n", "compile_error", 0.0),  # a syntax error
        ("    return undefined_name\n", "runtime_error", 1.0),  # raises when called
        ("    return [2] if xs == [1] else [9]\n", "partial", 1.0 + 1 / 3),  # 1 of 3 tests
        ("    return [x + 1 for x in xs]\n", "passed", 2.0),  # every test
        ("    while True:\n        pass\n", "runtime_error", 1.0),  # a timeout
    ],
    ids=["syntax", "runtime", "one-of-three", "all", "timeout"],
)
def test_ranking_levels_on_hand_made_responses(body, level, score):
    program = TASK.program(body, 0.5)
    with Sandbox(SandboxConfig(workers=1, timeout_s=0.5)) as sandbox:
        result = dict(sandbox.run_many([program]))[0]
    assert rank_response(program.code, result) == (level, pytest.approx(score))


def test_a_response_that_does_not_compile_is_never_run():
    assert rank_response("def f(:\n", None) == ("compile_error", 0.0)


# ---------------------------------------------------------------------- pairs
def r(score: float, role: str, text: str = "") -> Response:
    return Response(text or f"{role}{score}", role, role, score)


def test_pairs_drop_a_teacher_below_the_student_and_a_tie_ranks_the_teacher_higher():
    rs = [r(1.0, "student"), r(2.0, "teacher"), r(1.0, "teacher"), r(0.0, "teacher"), r(2.0, "student")]
    # teacher 1 (2.0) beats student 0 and ties student 4; teacher 2 (1.0) ties student 0;
    # teacher 3 (0.0) ranks below both students: its pairs are dropped
    assert rrtf_pairs(rs) == [(1, 0), (1, 4), (2, 0)]


def test_rrtf_items_weigh_by_the_score_gap_and_train_on_the_teacher():
    rs = [r(1.0, "student", "s"), r(2.0, "teacher", "t")]
    (item,) = RRTF().items("x", "p", rs)
    assert (item.sft, item.chosen, item.rejected, item.weight) == ("t", "t", "s", 1.0)
    assert TeacherSFT().items("x", "p", rs) == [item]  # the same data, without L_rank


def test_rrhf_pairs_every_strictly_ranked_pair_and_sfts_the_best_even_when_not_first():
    rs = [r(0.0, "student", "a"), r(1.5, "student", "b"), r(2.0, "student", "c"), r(2.0, "teacher", "d")]
    assert best_response(rs) == 3  # tie at 2.0: the teacher's
    items = RRHF().items("x", "p", rs)
    pairs = {(it.chosen, it.rejected) for it in items}
    assert pairs == {("b", "a"), ("c", "a"), ("d", "a"), ("c", "b"), ("d", "b")}
    assert {it.sft for it in items} == {"d"} and {it.weight for it in items} == {1.0}


def test_rejection_sampling_keeps_the_students_passing_responses():
    rs = [
        Response("ok", "s", "student", 2.0, "passed"),
        Response("no", "s", "student", 1.0, "runtime_error"),
        Response("tt", "t", "teacher", 2.0, "passed"),
    ]
    assert [it.sft for it in RejectionSampling().items("x", "p", rs)] == ["ok"]


# ---------------------------------------------------------------------- losses
def test_ranking_loss_on_hand_computed_inputs():
    # SFT sums and tokens of two teacher responses; pair scores [chosen, rejected]
    sft_sum, sft_tokens = torch.tensor([-2.0, -6.0]), torch.tensor([4.0, 2.0])
    pairs = torch.tensor([[-0.5, -0.2], [-1.0, -3.0]])  # first pair violated by 0.3, second fine
    weights = torch.tensor([2.0, 1.0])
    loss, m = ranking_loss(sft_sum, sft_tokens, pairs, weights, rank_weight=1.0)
    l_ft = (2.0 + 6.0) / (4.0 + 2.0)  # a token mean over the real tokens of the batch
    l_rank = (2.0 * 0.3 + 0.0) / 2  # -w * min(0, p_c - p_r), averaged over pairs
    assert m["ft_loss"] == pytest.approx(l_ft)
    assert m["rank_loss"] == pytest.approx(l_rank)
    assert float(loss) == pytest.approx(l_ft + l_rank)
    assert m["violated"] == 0.5
    loss0, _ = ranking_loss(sft_sum, sft_tokens, pairs, weights, rank_weight=0.0)
    assert float(loss0) == pytest.approx(l_ft)


def test_causal_scores_are_exact_and_normalised_by_each_responses_own_length():
    """Two responses of different lengths in one batch (RRHF's padding bug: it divides by the
    padded length): each score equals the one computed alone, over its own real tokens."""
    model = tiny_model(causal=True).eval()
    enc = Encoder(_Tok(), completion_length=8, end_token_id=2, pad_token_id=0)
    batch = enc.score_batch(["\x05\x06", "\x07"], [["\x0a\x0b\x0c\x0d\x0e", "\x0a"], ["\x0b", "\x0c\x0d"]])
    with torch.no_grad():
        s, n = sequence_scores(model, batch)
        assert n.tolist() == [[6.0, 2.0], [2.0, 3.0]]  # answer + end token
        for b, (prompt, responses) in enumerate([([5, 6], [[10, 11, 12, 13, 14], [10]]), ([7], [[11], [12, 13]])]):
            for k, answer in enumerate(responses):
                ids = torch.tensor([prompt + answer + [2]])
                logp = torch.log_softmax(model(ids), -1)[0]
                want = sum(float(logp[len(prompt) - 1 + i, tok]) for i, tok in enumerate([*answer, 2]))
                assert float(s[b, k]) == pytest.approx(want, abs=1e-5)


class _Tok:
    """Each character is its code point as a token (enough for hand-made ids)."""

    def encode(self, text: str) -> list[int]:
        return [ord(c) for c in text]


class FixedLogits(torch.nn.Module):
    """A 'diffusion model' whose log-probs do not depend on the input: logp[s, v] = table."""

    def __init__(self, table: torch.Tensor, mask_token_id: int) -> None:
        super().__init__()
        self.table = table  # (S, V)
        fields = dict(causal=False, mask_token_id=mask_token_id, shift_logits=False, block_size=None)
        self.config = type("C", (), fields)

    def forward(self, ids, attention_mask=None):
        return self.table[None, : ids.shape[1]].expand(ids.shape[0], -1, -1)


@pytest.mark.parametrize("form", ["t", "l"])
def test_diffusion_score_with_shared_draws_equals_the_hand_formula(form):
    torch.manual_seed(0)
    p, length, v, n_draws = 2, 6, 9, 3
    table = torch.log_softmax(torch.randn(p + length, v), -1)
    model = FixedLogits(table, mask_token_id=8)
    comp = torch.tensor([[[1, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1]]])  # one item, two responses
    batch = ScoreBatch(torch.tensor([[7, 7]]), torch.ones(1, 2, dtype=torch.bool), comp, torch.tensor([[6, 6]]))
    gen = torch.Generator().manual_seed(3)
    s, n = sequence_scores(model, batch, generator=gen, n_draws=n_draws, shared=True, form=form)
    draw = diffusion_draws if form == "t" else count_draws  # the rate t, or l / L (weight L / l)
    t, masked = draw(1, 2, length, n_draws, torch.Generator().manual_seed(3), shared=True)
    assert torch.equal(masked[0, 0], masked[0, 1]) and torch.equal(t[0, 0], t[0, 1])  # shared
    if form == "t":
        assert sorted(((t[0, 0] * n_draws).floor()).tolist()) == [0.0, 1.0, 2.0]  # one t per stratum
    else:
        assert (masked[0, 0].sum(-1) == (t[0, 0] * length).round().long()).all()  # exactly l masked
    for k in range(2):
        total = 0.0
        for j in range(n_draws):
            hits = [float(table[p + i, comp[0, k, i]]) for i in range(length) if masked[0, k, j, i]]
            total += sum(hits) / float(t[0, k, j])
        assert float(s[0, k]) == pytest.approx(total / n_draws, rel=1e-5)
    assert n.tolist() == [[6.0, 6.0]]  # the whole canvas counts


def test_independent_draws_differ_between_the_two_responses():
    _t, masked = diffusion_draws(4, 2, 16, 2, torch.Generator().manual_seed(0), shared=False)
    assert not torch.equal(masked[:, 0], masked[:, 1])


@pytest.mark.parametrize("form", ["t", "l"])
def test_shared_draws_cut_the_variance_of_the_score_difference_on_a_tiny_model(form):
    model = tiny_model().eval()
    enc = Encoder(_Tok(), completion_length=10, end_token_id=2, pad_token_id=0)
    batch = enc.score_batch(["\x05\x06\x07"], [["\x0a\x0b\x0c\x0d", "\x0a\x0b\x0c\x0e"]])
    diffs = {True: [], False: []}
    with torch.no_grad():
        for shared in (True, False):
            for seed in range(60):
                gen = torch.Generator().manual_seed(seed)
                s, n = sequence_scores(model, batch, generator=gen, shared=shared, form=form)
                diffs[shared].append(float((s / n)[0, 0] - (s / n)[0, 1]))
    var = {k: torch.tensor(v).var().item() for k, v in diffs.items()}
    assert var[True] < var[False] / 2  # two responses differing in one token: the noise cancels


def test_block_diffusion_students_are_refused_with_a_clear_error():
    model = tiny_model(block_size=4)
    enc = Encoder(_Tok(), completion_length=8, end_token_id=2, pad_token_id=0)
    with pytest.raises(ValueError, match="block-diffusion"):
        sequence_scores(model, enc.score_batch(["\x05"], [["\x0a"]]), generator=torch.Generator())


# ---------------------------------------------------------------------- framework
def test_algorithms_are_registered_by_name_and_declare_their_needs():
    assert {"grpo", "rrtf", "rrhf", "sft", "rejection-sampling"} <= set(ALGORITHMS.names())
    assert ALGORITHMS.get("rrtf") is RRTF and issubclass(ALGORITHMS.get("grpo"), Algorithm)
    with pytest.raises(ValueError, match="needs reward, rollouts"):
        check_requirements(ALGORITHMS.get("grpo"), {"ranked"})
    with pytest.raises(ValueError, match="did you mean 'rrtf'"):
        ALGORITHMS.get("rrft")


def test_rewards_declare_whether_they_need_a_sandbox():
    assert "sandbox" in get_reward("code_format").requirements
    assert FormatReward().requirements == frozenset()
    assert as_reward(lambda c, t, s=None: []).requirements == frozenset()  # a plain function declares nothing


# ---------------------------------------------------------------------- training
def _items() -> list[Item]:
    return [
        Item("a", "\x05\x06", "\x0a\x0b", "\x0a\x0b", "\x0c", 2.0),
        Item("b", "\x07", "\x0b\x0b\x0b", "\x0b\x0b\x0b", "\x0d\x0d", 1.0),
        Item("c", "\x05", "\x0c", "\x0c", "\x0a\x0a\x0a", 1.0),
    ]


def _train_cfg(tmp_path, **kw) -> TrainConfig:
    base = dict(max_steps=4, global_batch_size=2, lr=3e-3, warmup_steps=0, log_every=1, save_every=2,
                progress=False, out_dir=str(tmp_path))  # fmt: skip
    return TrainConfig(**{**base, **kw})


@pytest.mark.parametrize("causal", [False, True], ids=["diffusion", "autoregressive"])
def test_rrtf_training_raises_the_chosen_over_the_rejected(causal, tmp_path):
    model = tiny_model(causal=causal, shift_logits=True, max_position_embeddings=32)
    enc = Encoder(_Tok(), completion_length=6, end_token_id=2, pad_token_id=0)
    items = _items()
    algo = RRTF(rank_weight=5.0, n_draws=4)
    batch = enc.batch(items, ranks=True)

    def margin() -> float:
        with torch.no_grad():
            s, n = sequence_scores(model.eval(), batch.pairs, generator=torch.Generator().manual_seed(0), n_draws=8)
        model.train()
        return float(((s / n)[:, 0] - (s / n)[:, 1]).mean())

    before = margin()
    loop = train_ranked(algo, _train_cfg(tmp_path, max_steps=20, save_every=0), model, items, enc)
    assert loop.done == 20 and math.isfinite(loop.last_row["loss"])
    assert margin() > before + 0.5


def test_ranked_training_resumes_to_the_same_weights(tmp_path):
    enc = Encoder(_Tok(), completion_length=6, end_token_id=2, pad_token_id=0)
    whole = tiny_model()
    train_ranked(RRTF(), _train_cfg(tmp_path / "a"), whole, _items(), enc)

    class Kill(Callback):
        def on_step_end(self, step, metrics):
            if step == 3:  # after the checkpoint of step 2 and one unsaved step
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_ranked(RRTF(), _train_cfg(tmp_path / "b"), tiny_model(), _items(), enc, callbacks=[Kill()])
    resumed = tiny_model()
    train_ranked(RRTF(), _train_cfg(tmp_path / "b"), resumed, _items(), enc, resume=True)
    for (name, a), (_, b) in zip(whole.named_parameters(), resumed.named_parameters()):
        assert torch.equal(a, b), name


def test_rank_stage_resumes_without_losing_or_duplicating_a_prompt(tmp_path):
    from demask.training.posttrain import rrtf as R

    tasks = [Task(f"t{i}", f"def f{i}(x):\n", (f"assert f{i}(1) == 2",), f"f{i}") for i in range(5)]
    recipe = R.RRTFRecipe(
        student=R.ModelSpec("s", "unused"),
        teachers=[R.ModelSpec("t", "unused")],
        sample=R.SampleStage(temperatures=[1.0], n=1),
        rank=R.RankStage(prompts_per_chunk=2, workers=1),
        out_dir=str(tmp_path),
    )
    recipe.load_tasks = lambda: tasks  # type: ignore[method-assign]
    for name, body in (("s", "    return x\n"), ("t", "    return x + 1\n")):
        folder = R.sample_dir(recipe, name, 1.0)
        folder.mkdir(parents=True)
        lines = [json.dumps({"task_id": t.task_id, "sample_index": 0, "completion": body}) for t in tasks]
        (folder / "samples.jsonl").write_text("\n".join(lines) + "\n")
    (R.sample_dir(recipe, "s", 1.0) / "results.json").write_text("{}")  # the student's sampling finished
    with pytest.raises(ValueError, match="sampling of t at T=1 did not finish"):
        R.run_rank(recipe, log=lambda _: None, sandbox=object())
    for name in ("s", "t"):
        (R.sample_dir(recipe, name, 1.0) / "results.json").write_text("{}")
    with Sandbox(SandboxConfig(workers=1)) as sandbox:
        R.run_rank(recipe, log=lambda _: None, sandbox=sandbox)
        whole = (tmp_path / R.RANKED_FILE).read_text()
        lines = whole.splitlines(keepends=True)
        (tmp_path / R.RANKED_FILE).write_text("".join(lines[:2]) + lines[2][:10])  # a crash mid-line
        R.run_rank(recipe, log=lambda _: None, sandbox=sandbox)
    assert (tmp_path / R.RANKED_FILE).read_text() == whole
    pairs = [json.loads(x) for x in (tmp_path / R.PAIRS_FILE).read_text().splitlines()]
    assert len(pairs) == 5 and {p["teacher_score"] - p["student_score"] for p in pairs} == {2.0 - 1.0}


RRTF_RECIPES = sorted((ROOT / "recipes").glob("**/rrtf*.yaml"))


@pytest.mark.parametrize("path", RRTF_RECIPES, ids=lambda p: p.relative_to(ROOT / "recipes").as_posix())
def test_shipped_rrtf_recipes_load_and_round_trip(path, tmp_path):
    from demask.training.posttrain.rrtf import dump_rrtf_recipe, load_rrtf_recipe

    recipe = load_rrtf_recipe(path)
    again = tmp_path / "again.yaml"
    again.write_text(dump_rrtf_recipe(recipe))
    assert load_rrtf_recipe(again) == recipe
    with pytest.raises(ValueError, match="did you mean"):
        load_rrtf_recipe(path, ["algoritm=rrhf"])


def test_rrtf_command_names_a_bad_stage_without_a_traceback():
    from typer.testing import CliRunner

    from demask.cli.main import app

    result = CliRunner().invoke(app, ["rrtf", "smaple", "--recipe", "tinycode/rrtf"])
    assert result.exit_code == 2 and "unknown stage 'smaple'" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    "module",
    ["training.updates", "training.posttrain.ranking", "training.posttrain.scores", "training.posttrain.unmasking"],
)
def test_doctests(module):
    import doctest
    import importlib

    failed, attempted = doctest.testmod(importlib.import_module(f"demask.{module}"), verbose=False)
    assert failed == 0 and attempted >= 1
