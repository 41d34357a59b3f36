"""The training loop on a tiny model: it learns, resumes bit for bit, accumulates, saves."""

from __future__ import annotations

import csv

import pytest
import torch
from helpers import tiny_model

from demask.model import load_pretrained
from demask.training.callbacks import HeldOutLoss
from demask.training.checkpointing import LATEST, TRAINER_STATE, latest_checkpoint, list_checkpoints
from demask.training.config import TrainConfig
from demask.training.data import SFTData, TokenChunks, make_sft_example
from demask.training.logs import plot_log, read_log
from demask.training.loop import Callback, train

E, M, P = 0, 1, 2


# where the model differs from helpers.TINY (std: init_weights' default)
MODEL_ARGS = dict(vocab_size=16, num_heads=2, mask_token_id=M, pad_token_id=P, eos_token_id=E, std=0.02)


def reverse_data(n: int = 32, seed: int = 0) -> SFTData:
    """Prompt: 1-4 tokens; completion: the prompt reversed."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        k = int(torch.randint(1, 5, (1,), generator=g))
        prompt = torch.randint(3, 16, (k,), generator=g).tolist()
        out.append(make_sft_example(prompt, prompt[::-1], completion_length=6, end_token_id=E, pad_token_id=P))
    return SFTData(out, P)


def config(tmp_path=None, **kw) -> TrainConfig:
    base = dict(
        max_steps=6,
        global_batch_size=8,
        micro_batch_size=4,
        lr=3e-3,
        warmup_steps=2,
        log_every=1,
        progress=False,
        device="cpu",
        distributed="none",
        out_dir=str(tmp_path) if tmp_path is not None else None,
    )
    base.update(kw)
    return TrainConfig(**base)


class Kill(Exception):
    pass


class KillAt(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, step, metrics):
        if step == self.step:
            raise Kill(step)


def params(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def log_losses(path):
    with open(path, newline="") as f:
        return {int(r["step"]): r["loss"] for r in csv.DictReader(f)}


def test_resume_after_a_kill_gives_the_same_parameters(tmp_path):
    # 32 examples / 8 per step = 4 steps per epoch: the run crosses an epoch boundary, and
    # two micro-batches per step exercise accumulation.
    straight = tiny_model(**MODEL_ARGS)
    train(config(tmp_path / "a", save_every=2), straight, reverse_data())

    first = tiny_model(**MODEL_ARGS)
    with pytest.raises(Kill):  # dies after step 3; the last checkpoint is step 2
        train(config(tmp_path / "b", save_every=2), first, reverse_data(), callbacks=[KillAt(3)])
    assert latest_checkpoint(tmp_path / "b").name == "checkpoint-0000002"
    resumed = tiny_model(seed=99, **MODEL_ARGS)  # weights come from the checkpoint, not this init
    result = train(config(tmp_path / "b", save_every=2), resumed, reverse_data(), resume=True)
    assert result.step == 6
    a, b = params(straight), params(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    # The log of the resumed run is that of the straight one (rows after step 2 rewritten).
    assert log_losses(tmp_path / "a" / "train_log.csv") == log_losses(tmp_path / "b" / "train_log.csv")


def test_resume_refuses_a_different_global_batch(tmp_path):
    train(config(tmp_path, max_steps=2), tiny_model(**MODEL_ARGS), reverse_data())
    with pytest.raises(ValueError, match="global_batch_size=8.*global_batch_size=16"):
        train(
            config(tmp_path, max_steps=4, global_batch_size=16, micro_batch_size=8),
            tiny_model(**MODEL_ARGS),
            reverse_data(),
            resume=True,
        )


def test_resume_without_checkpoint_starts_fresh_and_a_fresh_run_never_overwrites(tmp_path):
    result = train(config(tmp_path, max_steps=2), tiny_model(**MODEL_ARGS), reverse_data(), resume=True)
    assert result.step == 2 and (tmp_path / LATEST).is_file()
    with pytest.raises(ValueError, match="already holds checkpoints"):
        train(config(tmp_path, max_steps=2), tiny_model(**MODEL_ARGS), reverse_data())


def test_gradient_accumulation_matches_one_big_batch():
    whole, split = tiny_model(**MODEL_ARGS), tiny_model(**MODEL_ARGS)
    train(config(micro_batch_size=8), whole, reverse_data())
    train(config(micro_batch_size=2), split, reverse_data())
    a, b = params(whole), params(split)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)


def test_training_lowers_the_held_out_loss(tmp_path):
    from demask.training.distributed import DistInfo

    model = tiny_model(**MODEL_ARGS)
    held_out = HeldOutLoss(reverse_data(32, seed=1), "masked-diffusion")
    with torch.no_grad():
        untrained = held_out.on_evaluate(0, model, DistInfo())["heldout_loss"]
    before = model.state_dict()["lm_head.weight"].clone()
    result = train(
        config(
            tmp_path,
            max_steps=60,
            global_batch_size=16,
            micro_batch_size=None,
            lr=1e-2,
            warmup_steps=5,
            log_every=10,
            eval_every=20,
        ),
        model,
        reverse_data(128),
        callbacks=[held_out],
    )
    series = read_log(result.log_path)
    evals = [v for _, v in series["eval/heldout_loss"]]
    assert [s for s, _ in series["eval/heldout_loss"]] == [20, 40, 60]
    assert evals[-1] < 0.8 * untrained  # untrained ~3.0 nats, 60 steps reach ~2.2
    assert series["loss"][-1][1] < series["loss"][0][1]
    assert not torch.equal(before, model.state_dict()["lm_head.weight"])
    png = plot_log(result.log_path, tmp_path / "log.png")
    assert png.stat().st_size > 1000


def test_autoregressive_and_bf16_use_the_same_loop():
    model = tiny_model(causal=True, **MODEL_ARGS)
    before = params(model)
    result = train(config(objective="autoregressive", precision="bf16", max_steps=3), model, reverse_data())
    assert result.loss is not None and torch.isfinite(torch.tensor(result.loss))
    after = params(model)
    assert all(v.dtype == torch.float32 for v in after.values())  # autocast keeps fp32 weights
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_pretraining_chunks_train(tmp_path):
    chunks = torch.randint(3, 16, (16, 12), generator=torch.Generator().manual_seed(0))
    result = train(config(tmp_path, max_steps=2), tiny_model(**MODEL_ARGS), TokenChunks(chunks))
    assert result.step == 2 and result.loss > 0


def test_checkpoints_are_complete_pruned_and_loadable(tmp_path):
    from demask.model import train_bpe_tokenizer

    tok = train_bpe_tokenizer(["def f(x):\n    return x\n"] * 4, 259)
    model = tiny_model(**MODEL_ARGS)
    train(
        config(tmp_path, save_every=2, keep_checkpoints=2),
        model,
        reverse_data(),
        tokenizer=tok,
        extra_files={"recipe.yaml": "x: 1\n"},
    )
    kept = [p.name for p in list_checkpoints(tmp_path)]
    assert kept == ["checkpoint-0000004", "checkpoint-0000006"]
    assert (tmp_path / LATEST).read_text().strip() == "checkpoint-0000006"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary leftovers
    loaded, tokenizer = load_pretrained(tmp_path / "checkpoint-0000006")
    a = params(model)
    assert all(torch.equal(a[k], v) for k, v in loaded.state_dict().items())
    assert tokenizer.vocab_size == tok.vocab_size
    assert (tmp_path / "checkpoint-0000006" / "recipe.yaml").read_text() == "x: 1\n"
    state = torch.load(tmp_path / "checkpoint-0000006" / TRAINER_STATE, weights_only=True)
    assert state["step"] == 6 and state["data"] == {"n_examples": 32, "epoch": 1, "step_in_epoch": 2}
    assert set(state["optimizer"]["state"]) == {n for n, _ in model.named_parameters()}


def test_log_has_the_documented_columns(tmp_path):
    result = train(config(tmp_path, max_steps=4, log_every=2), tiny_model(**MODEL_ARGS), reverse_data())
    with open(result.log_path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["step"] for r in rows] == ["2", "4"]
    assert list(rows[0])[:7] == ["step", "loss", "lr", "grad_norm", "tokens_per_s", "steps_per_s", "elapsed_s"]
    assert float(rows[1]["lr"]) == pytest.approx(3e-3 * 0.1)  # the cosine's end
    assert all(float(r["tokens_per_s"]) > 0 for r in rows)


def test_checkpoint_step_reads_the_folder_name():
    from demask.training.checkpointing import checkpoint_dir, checkpoint_step

    assert checkpoint_step(checkpoint_dir("runs/x", 162)) == 162
    with pytest.raises(ValueError, match="not a checkpoint folder"):
        checkpoint_step("runs/x/latest")
