"""The learned unmasking policy's network: size, initial probability, its checkpoint, and
decoding with it by name (``policy: learned``, ``policy_options.path``)."""

from __future__ import annotations

import pytest
import torch
from helpers import random_policy_net, tiny_model

from demask.decoding import DecodeConfig, LearnedPolicy, generate
from demask.decoding.policy_net import PolicyNet, load_policy, save_policy


def test_the_network_has_about_300k_parameters_and_starts_at_0_12():
    net = PolicyNet()
    assert 250_000 <= net.num_parameters() <= 400_000
    masked = torch.rand(3, 16) < 0.5
    p = net.probabilities(masked, torch.rand(3, 16), torch.rand(3))
    assert torch.allclose(p, torch.full_like(p, 0.1192), atol=1e-4)  # sigmoid(-2)


def test_the_network_reads_mask_bits_confidence_and_time():
    net = random_policy_net()
    masked, conf, t = torch.rand(2, 8) < 0.5, torch.rand(2, 8), torch.tensor([0.1, 0.6])
    base = net(masked, conf, t)
    assert not torch.allclose(base, net(~masked, conf, t))
    assert not torch.allclose(base, net(masked, conf.flip(-1), t))
    assert not torch.allclose(base, net(masked, conf, t + 0.3))


def _decode(policy, model, block_length=4):
    fields = policy if isinstance(policy, dict) else {"policy": policy}
    config = DecodeConfig(gen_length=8, block_length=block_length, temperature=0.0, **fields)
    return generate(model, [[5, 6, 7]], config, generator=torch.Generator().manual_seed(0))


def test_a_saved_policy_decodes_identically_by_name(tmp_path):
    model = tiny_model().eval()
    net = random_policy_net(block_length=4)
    save_policy(net, tmp_path / "policy")
    direct = _decode(LearnedPolicy(lambda f: net.probabilities(f.masked, f.confidence, f.time)), model)
    by_name = _decode({"policy": "learned", "policy_options": {"path": str(tmp_path / "policy")}}, model)
    assert torch.equal(direct.tokens, by_name.tokens) and direct.nfe == by_name.nfe
    loaded = load_policy(tmp_path / "policy")
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), loaded.state_dict().values()))


def test_a_policy_that_does_not_fit_is_a_clear_error(tmp_path):
    model = tiny_model().eval()
    save_policy(random_policy_net(block_length=4), tmp_path / "p4")
    with pytest.raises(ValueError, match="trained on blocks of 4 tokens, the decoder uses blocks of 8"):
        _decode({"policy": "learned", "policy_options": {"path": str(tmp_path / "p4")}}, model, block_length=8)
    with pytest.raises(FileNotFoundError, match="model.safetensors is missing"):
        (tmp_path / "p4" / "model.safetensors").unlink()
        load_policy(tmp_path / "p4")
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text('{"model_type": "qwen2"}')
    (tmp_path / "ckpt" / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="not an unmasking policy"):
        load_policy(tmp_path / "ckpt")
    with pytest.raises(ValueError, match="policy_options.path=DIR"):
        LearnedPolicy()


def test_a_full_diffusion_policy_decodes_any_length_in_one_block_only(tmp_path):
    model = tiny_model().eval()
    save_policy(random_policy_net(block_length=None), tmp_path / "full")
    options = {"policy": "learned", "policy_options": {"path": str(tmp_path / "full")}}
    assert _decode(options, model, block_length=None).tokens.shape[1] == 3 + 8  # one block of 8
    with pytest.raises(ValueError, match="trained for full diffusion"):
        _decode(options, model, block_length=4)


def test_a_policy_stored_in_fp16_is_half_the_size_and_loads_in_fp32(tmp_path):
    net = random_policy_net(block_length=4)
    save_policy(net, tmp_path / "fp32")
    save_policy(net, tmp_path / "fp16", dtype=torch.float16)
    size32 = (tmp_path / "fp32" / "model.safetensors").stat().st_size
    size16 = (tmp_path / "fp16" / "model.safetensors").stat().st_size
    assert size16 < 0.55 * size32
    loaded = load_policy(tmp_path / "fp16")
    for (name, a), b in zip(net.state_dict().items(), loaded.state_dict().values()):
        assert b.dtype == torch.float32, name
        assert torch.equal(b, a.half().float()), name  # exactly the fp16 rounding of the weights, nothing else
