"""Save/load round trips, foreign tensor names, and the errors a user sees on bad input."""

import json

import pytest
import torch
from safetensors.torch import save_file

from demask.model import (
    ModelConfig,
    Transformer,
    load_model,
    load_pretrained,
    read_config,
    save_pretrained,
    train_bpe_tokenizer,
)
from demask.model.checkpoint import LLADA_NAME_MAP, llada_to_demask_name

SMALL = dict(
    vocab_size=300,
    hidden_size=32,
    intermediate_size=64,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    max_position_embeddings=64,
)


def _model(**kw):
    torch.manual_seed(0)
    m = Transformer(ModelConfig(**{**SMALL, **kw}))
    m.init_weights(std=0.2)
    return m.eval()


def _ids(b=2, t=11, v=300, seed=0):
    return torch.randint(0, v, (b, t), generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def tokenizer():
    texts = ["def add(a, b):\n    return a + b\n", "xs = [x * 2 for x in xs if x > 3]\n"] * 20
    return train_bpe_tokenizer(texts, vocab_size=300)


@pytest.mark.parametrize("kw", [dict(), dict(tie_word_embeddings=True), dict(qkv_bias=True, causal=True)])
def test_round_trip_identical_logits(tmp_path, tokenizer, kw):
    m = _model(**kw)
    save_pretrained(m, tmp_path / "ckpt", tokenizer)
    loaded, tok = load_pretrained(tmp_path / "ckpt")
    with torch.no_grad():
        assert torch.equal(loaded(_ids()), m(_ids()))
    assert loaded.config == m.config.replace(
        mask_token_id=tokenizer.mask_token_id, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id
    )
    assert tok.mask_token_id == tokenizer.mask_token_id == loaded.config.mask_token_id
    assert tok.decode(tok.encode("def f(x):\n    return x\n")) == "def f(x):\n    return x\n"


def test_sharded_round_trip(tmp_path):
    m = _model()
    save_pretrained(m, tmp_path / "ckpt", max_shard_bytes=20_000)
    files = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert "model.safetensors.index.json" in files and "model.safetensors" not in files
    assert sum(f.startswith("model-000") for f in files) > 2
    with torch.no_grad():
        assert torch.equal(load_model(tmp_path / "ckpt")(_ids()), m(_ids()))


def test_dtype_choice_at_load(tmp_path):
    save_pretrained(_model(), tmp_path / "ckpt")
    assert load_model(tmp_path / "ckpt", dtype="bf16").dtype == torch.bfloat16
    assert load_model(tmp_path / "ckpt", dtype=torch.float16).dtype == torch.float16
    with pytest.raises(ValueError, match="unknown dtype 'fp8'"):
        load_model(tmp_path / "ckpt", dtype="fp8")


DIFFUCODER_CONFIG = {
    "architectures": ["DreamModel"],
    "model_type": "Dream",
    "vocab_size": 300,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "hidden_act": "silu",
    "max_position_embeddings": 64,
    "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0,
    "rope_scaling": None,
    "tie_word_embeddings": False,
    "mask_token_id": 299,
    "pad_token_id": 298,
    "torch_dtype": "bfloat16",
    "auto_map": {"AutoModel": "modeling_dream.DreamModel"},
}


def test_loads_diffucoder_layout(tmp_path):
    """Exactly DiffuCoder's tensor names and config keys: bidirectional, shifted, bias on q/k/v."""
    torch.manual_seed(1)
    state = {}
    h, kv, inter, v = 32, 2 * 8, 64, 300
    state["model.embed_tokens.weight"] = torch.randn(v, h)
    state["model.norm.weight"] = torch.randn(h)
    state["lm_head.weight"] = torch.randn(v, h)
    for i in range(2):
        p = f"model.layers.{i}."
        state[p + "self_attn.q_proj.weight"] = torch.randn(h, h)
        state[p + "self_attn.q_proj.bias"] = torch.randn(h)
        state[p + "self_attn.k_proj.weight"] = torch.randn(kv, h)
        state[p + "self_attn.k_proj.bias"] = torch.randn(kv)
        state[p + "self_attn.v_proj.weight"] = torch.randn(kv, h)
        state[p + "self_attn.v_proj.bias"] = torch.randn(kv)
        state[p + "self_attn.o_proj.weight"] = torch.randn(h, h)
        state[p + "mlp.gate_proj.weight"] = torch.randn(inter, h)
        state[p + "mlp.up_proj.weight"] = torch.randn(inter, h)
        state[p + "mlp.down_proj.weight"] = torch.randn(h, inter)
        state[p + "input_layernorm.weight"] = torch.randn(h)
        state[p + "post_attention_layernorm.weight"] = torch.randn(h)
    state = {k: t.to(torch.bfloat16) for k, t in state.items()}
    save_file(state, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(DIFFUCODER_CONFIG))
    m = load_model(tmp_path, dtype="float32")
    cfg = m.config
    assert (cfg.causal, cfg.shift_logits, cfg.qkv_bias, cfg.architecture) == (False, True, True, "dream")
    assert (cfg.mask_token_id, cfg.pad_token_id, cfg.rope_theta) == (299, 298, 1e6)
    assert torch.equal(m.model.layers[1].self_attn.k_proj.bias, state["model.layers.1.self_attn.k_proj.bias"].float())
    ids = _ids(1, 9)
    with torch.no_grad():
        out = m(ids)
        changed = ids.clone()
        changed[0, -1] = (ids[0, -1] + 1) % 300
        # bidirectional: the first position sees the last token
        assert not torch.allclose(m(changed)[0, 0], out[0, 0])


def test_loads_llada_layout_through_name_map(tmp_path):
    """A tiny checkpoint with LLaDA's OLMo names and config keys gives the same logits."""
    ours = _model(causal=False, shift_logits=False, rms_norm_eps=1e-5)
    inverse = {}
    for src, dst in LLADA_NAME_MAP.items():
        for i in range(2):
            inverse[dst.replace("{i}", str(i))] = src.replace("{i}", str(i))
    state = {inverse[k]: t.clone() for k, t in ours.state_dict().items()}
    assert all(llada_to_demask_name(k) in ours.state_dict() for k in state)
    save_file(state, str(tmp_path / "model.safetensors"))
    config = {
        "model_type": "llada",
        "architectures": ["LLaDAModelLM"],
        "d_model": 32,
        "n_heads": 4,
        "n_kv_heads": 2,
        "n_layers": 2,
        "mlp_hidden_size": 64,
        "rope_theta": 10000.0,
        "rms_norm_eps": 1e-5,
        "vocab_size": 300,
        "embedding_size": 300,
        "weight_tying": False,
        "mask_token_id": 126,
        "eos_token_id": 12,
        "pad_token_id": 12,
        "max_sequence_length": 64,
        "include_bias": False,
        "block_type": "llama",
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    m = load_model(tmp_path)
    assert (m.config.shift_logits, m.config.causal, m.config.mask_token_id) == (False, False, 126)
    with torch.no_grad():
        assert torch.equal(m(_ids()), ours(_ids()))


def test_missing_config_names_path_and_expected_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no checkpoint at .*expected config.json"):
        load_model(tmp_path / "nowhere")


def test_missing_weights_names_expected_files(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(DIFFUCODER_CONFIG))
    with pytest.raises(FileNotFoundError, match=r"expected model.safetensors or model.safetensors.index.json"):
        load_model(tmp_path)


def test_missing_tokenizer_names_path(tmp_path):
    save_pretrained(_model(), tmp_path / "ckpt")
    with pytest.raises(FileNotFoundError, match=r"tokenizer.json"):
        load_pretrained(tmp_path / "ckpt")


def test_unknown_architecture(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}))
    with pytest.raises(ValueError, match=r"unknown architecture in config.json: model_type='gpt2'"):
        read_config(tmp_path)


def test_shape_mismatch_names_tensor_and_both_shapes(tmp_path):
    m = _model()
    save_pretrained(m, tmp_path / "ckpt")
    cfg = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    cfg["intermediate_size"] = 80
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(
        ValueError,
        match=r"tensor 'model.layers.0.mlp.down_proj.weight' in model.safetensors has shape \(32, 64\), "
        r"the config implies \(32, 80\)",
    ):
        load_model(tmp_path / "ckpt")


def test_missing_tensor_is_reported(tmp_path):
    m = _model()
    state = {k: v for k, v in m.state_dict().items() if k != "model.norm.weight"}
    (tmp_path / "config.json").write_text(json.dumps(m.config.to_hf_dict()))
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match=r"lacks 1 tensors.*model.norm.weight"):
        load_model(tmp_path)


def test_prompt_longer_than_context_names_both_lengths():
    m = _model()
    with pytest.raises(ValueError, match=r"sequence of 65 tokens is longer than the model's context of 64"):
        m(_ids(1, 65))


def test_bad_config_values_are_named():
    with pytest.raises(ValueError, match=r"num_heads \(6\) must be a multiple of num_kv_heads \(4\)"):
        ModelConfig(num_heads=6, num_kv_heads=4, hidden_size=48)


def test_diffucoder_7b_on_meta_device():
    """DiffuCoder-7B's sizes instantiate without memory and count ~7.6B parameters."""
    cfg = ModelConfig.from_hf_dict(
        {
            **DIFFUCODER_CONFIG,
            "vocab_size": 152064,
            "hidden_size": 3584,
            "intermediate_size": 18944,
            "num_hidden_layers": 28,
            "num_attention_heads": 28,
            "num_key_value_heads": 4,
            "max_position_embeddings": 131072,
        }
    )
    with torch.device("meta"):
        m = Transformer(cfg)
    assert all(p.is_meta for p in m.parameters())
    n = m.num_parameters()
    assert 7.5e9 < n < 7.7e9, n


def test_tokenizer_special_tokens_from_files(tmp_path, tokenizer):
    tokenizer.save(tmp_path)
    from demask.model import Tokenizer

    tok = Tokenizer.from_dir(tmp_path)
    assert (tok.mask_token_id, tok.pad_token_id, tok.eos_token_id) == (
        tokenizer.mask_token_id,
        tokenizer.pad_token_id,
        tokenizer.eos_token_id,
    )
    # config.json ids win over names
    tok2 = Tokenizer.from_dir(tmp_path, config={"mask_token_id": 7})
    assert tok2.mask_token_id == 7
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"mask_token": "<|nope|>"}))
    with pytest.raises(ValueError, match="name '<\\|nope\\|>' as the mask token"):
        Tokenizer.from_dir(tmp_path)


def test_bpe_trainer_refuses_tiny_vocab():
    with pytest.raises(ValueError, match="vocab_size=100 is below"):
        train_bpe_tokenizer(["abc"], vocab_size=100)
