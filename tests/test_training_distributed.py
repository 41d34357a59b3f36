"""Two processes on the gloo backend (torchrun) give the parameters of one process with
the same global batch: DDP, and FSDP2 (fully_shard) on the CPU."""

from __future__ import annotations

import textwrap

import pytest
import torch
from distributed_launch import launch
from safetensors.torch import load_file

WORKER = textwrap.dedent("""
    import sys
    import torch
    from demask.model import ModelConfig, Transformer
    from demask.training import SFTData, TrainConfig, make_sft_example, train

    strategy, out, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    torch.set_num_threads(1)
    cfg = ModelConfig(vocab_size=16, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2,
                      num_kv_heads=2, max_position_embeddings=32, mask_token_id=1, pad_token_id=2,
                      eos_token_id=0)
    model = Transformer(cfg)
    model.init_weights(generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    examples = []
    for _ in range(32):
        k = int(torch.randint(1, 5, (1,), generator=g))
        prompt = torch.randint(3, 16, (k,), generator=g).tolist()
        examples.append(make_sft_example(prompt, prompt[::-1], completion_length=6, end_token_id=0,
                                         pad_token_id=2))
    config = TrainConfig(max_steps=4, global_batch_size=8, micro_batch_size=2, lr=3e-3, warmup_steps=1,
                         progress=False, device="cpu", distributed=strategy, out_dir=out, save_every=2)
    from demask.training import Callback

    class KillAfterStep3(Callback):
        def on_step_end(self, step, metrics):
            if step == 3:
                raise SystemExit(0)  # the last checkpoint is step 2

    callbacks = [KillAfterStep3()] if mode == "kill" else []
    result = train(config, model, SFTData(examples, 2), callbacks=callbacks, resume=mode == "resume")
    if strategy != "none":
        import torch.distributed as dist
        dist.destroy_process_group()
""")


def _run(tmp_path, strategy: str, nproc: int, mode: str = "straight"):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    out = tmp_path / f"{strategy}-{nproc}"
    launch(script, [strategy, str(out), mode], nproc)
    final = out / "checkpoint-0000004" / "model.safetensors"
    return (load_file(str(final)) if final.is_file() else None), out


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("single"), "none", 1)[0]


@pytest.mark.slow
def test_ddp_two_processes_match_one(tmp_path, single):
    two, _ = _run(tmp_path, "ddp", 2)
    assert set(two) == set(single)
    for name in single:
        torch.testing.assert_close(two[name], single[name], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_fsdp_two_processes_match_one_and_save_full_weights(tmp_path, single):
    two, out = _run(tmp_path, "fsdp", 2)
    assert {k: v.shape for k, v in two.items()} == {k: v.shape for k, v in single.items()}
    for name in single:
        torch.testing.assert_close(two[name], single[name], rtol=1e-4, atol=1e-5)
    state = torch.load(out / "checkpoint-0000004" / "trainer_state.pt", weights_only=True)
    assert state["world_size"] == 2
    assert "model.layers.0.self_attn.q_proj.weight" in state["optimizer"]["state"]


@pytest.mark.slow
def test_fsdp_resume_after_a_kill_matches_one(tmp_path, single):
    killed, out = _run(tmp_path, "fsdp", 2, mode="kill")
    assert killed is None and (out / "checkpoint-0000002").is_dir()
    resumed, _ = _run(tmp_path, "fsdp", 2, mode="resume")
    for name in single:
        torch.testing.assert_close(resumed[name], single[name], rtol=1e-4, atol=1e-5)
