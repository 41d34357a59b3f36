"""GRPO under torchrun: two gloo processes, each rolling out and scoring half the prompts,
end with the parameters of one process doing all of them."""

from __future__ import annotations

import ast
import textwrap

import pytest
import torch
from distributed_launch import launch
from safetensors.torch import load_file

WORKER = textwrap.dedent("""
    import sys
    import torch
    from demask.model import ModelConfig, Transformer
    from demask.tasks.base import Task
    from demask.training.config import TrainConfig
    from demask.training.rl import RewardBreakdown
    from demask.training.rl.grpo import GRPOConfig, train_grpo
    from demask.training.rl.rollouts import RolloutBatch

    strategy, out = sys.argv[1], sys.argv[2]
    torch.set_num_threads(1)
    cfg = ModelConfig(vocab_size=32, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4,
                      num_kv_heads=2, max_position_embeddings=32, mask_token_id=31, pad_token_id=0,
                      eos_token_id=2)
    model = Transformer(cfg)
    model.init_weights(std=0.2, generator=torch.Generator().manual_seed(0))
    seen = []

    def rollouts(model, tasks, group_size, generator):
        # task i's group: row j is "good" (ends after 3 tokens) when (i + j) is even
        rows, texts = [], []
        for t in tasks:
            i = int(t.task_id)
            seen.append(i)
            for j in range(group_size):
                good = (i + j) % 2 == 0
                rows.append([5, 6, 7, 8] + ([10, 11, 12, 2, 0, 0] if good else [20 + i, 21, 22, 23, 24, 2]))
                texts.append("good" if good else "bad")
        ids = torch.tensor(rows)
        return RolloutBatch(ids, torch.ones_like(ids, dtype=torch.bool), 4, texts, [1] * len(rows))

    def reward(completions, tasks, sandbox=None):
        return [RewardBreakdown(2.5 * (c == "good"), 1.0 * (c == "good"), 1.0) for c in completions]

    tasks = [Task(str(i), "p", (), "f") for i in range(8)]
    train = TrainConfig(max_steps=4, lr=1e-3, warmup_steps=0, progress=False, device="cpu",
                        distributed=strategy, out_dir=out, log_every=2)
    grpo = GRPOConfig(group_size=4, prompts_per_step=4, inner_iterations=2, estimator="full_mask")
    train_grpo(grpo, train, model, tasks, rollout_fn=rollouts, reward_fn=reward)
    # one file per rank: two ranks printing to one pipe can interleave their lines
    import os
    rank = os.environ.get("RANK", "0")
    with open(f"{out}-seen-{rank}.txt", "w") as f:
        f.write(repr(sorted(seen)))
    if strategy != "none":
        import torch.distributed as dist
        dist.destroy_process_group()
""")


def _run(tmp_path, strategy: str, nproc: int):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    out = tmp_path / f"{strategy}-{nproc}"
    launch(script, [strategy, str(out)], nproc)
    seen = [ast.literal_eval(p.read_text()) for p in sorted(tmp_path.glob(f"{out.name}-seen-*.txt"))]
    return load_file(str(out / "checkpoint-0000004" / "model.safetensors")), seen


@pytest.mark.slow
def test_ddp_two_processes_split_the_prompts_and_match_one(tmp_path):
    one, seen_one = _run(tmp_path, "none", 1)
    two, seen_two = _run(tmp_path, "ddp", 2)
    assert len(seen_one) == 1 and len(seen_two) == 2
    # each process rolled out a different half of the prompts; together, the single run's
    halves = seen_two
    assert not set(halves[0]) & set(halves[1])
    assert sorted(halves[0] + halves[1]) == sorted(seen_one[0])
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=1e-5)
