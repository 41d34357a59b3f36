"""Causal-mode parity with transformers' Qwen2 and LLaMA built with the same random weights."""

import pytest
import torch

from demask.model import load_model

transformers = pytest.importorskip("transformers")


def _qwen2(tmp_path, tie=False):
    cfg = transformers.Qwen2Config(
        vocab_size=97,
        hidden_size=64,
        intermediate_size=112,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        rms_norm_eps=1e-6,
        rope_theta=10000.0,
        tie_word_embeddings=tie,
    )
    torch.manual_seed(0)
    ref = transformers.Qwen2ForCausalLM(cfg).eval()
    with torch.no_grad():  # biases default to zero: randomise them so they are checked too
        for name, p in ref.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.5)
    ref.save_pretrained(tmp_path)
    return ref


def _llama(tmp_path):
    cfg = transformers.LlamaConfig(
        vocab_size=101,
        hidden_size=48,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=6,
        num_key_value_heads=3,
        max_position_embeddings=128,
        rms_norm_eps=1e-5,
        rope_theta=500000.0,
        tie_word_embeddings=False,
    )
    torch.manual_seed(1)
    ref = transformers.LlamaForCausalLM(cfg).eval()
    ref.save_pretrained(tmp_path)
    return ref


@pytest.mark.parametrize("tie", [False, True])
def test_qwen2_parity_causal(tmp_path, tie):
    ref = _qwen2(tmp_path, tie)
    ours = load_model(tmp_path, dtype="float32")
    assert ours.config.causal and ours.config.qkv_bias
    ids = torch.randint(0, 97, (3, 17), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        theirs = ref(ids).logits
        mine = ours(ids)
    torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=0)


def test_llama_parity_causal(tmp_path):
    ref = _llama(tmp_path)
    ours = load_model(tmp_path, dtype="float32")
    assert ours.config.causal and not ours.config.qkv_bias
    ids = torch.randint(0, 101, (2, 23), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), ref(ids).logits, atol=1e-5, rtol=0)


def test_qwen2_parity_left_padding(tmp_path):
    """With left padding, a real mask and position ids, real tokens match transformers."""
    ref = _qwen2(tmp_path)
    ours = load_model(tmp_path, dtype="float32")
    ids = torch.randint(0, 97, (2, 12), generator=torch.Generator().manual_seed(4))
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[0, :5] = 0
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        theirs = ref(ids, attention_mask=mask, position_ids=pos).logits
        mine = ours(ids, attention_mask=mask, position_ids=pos)
    real = mask.bool()
    torch.testing.assert_close(mine[real], theirs[real], atol=1e-5, rtol=0)


def test_parity_kv_cache_slices_match_full_forward(tmp_path):
    """Causal forward in two slices through a KV cache equals one full forward."""
    _qwen2(tmp_path)
    ours = load_model(tmp_path, dtype="float32")
    ids = torch.randint(0, 97, (2, 15), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        full = ours(ids)
        cache = ours.new_cache(15)
        a = ours(ids[:, :9], cache=cache, cache_start=0)
        b = ours(ids[:, 9:], cache=cache, cache_start=9)
    torch.testing.assert_close(torch.cat([a, b], 1), full, atol=1e-5, rtol=0)
