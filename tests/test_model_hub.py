"""Checkpoints by directory, shipped name or Hugging Face hub id (offline, from a cache folder
this test lays out the way huggingface_hub does: models--ORG--NAME/{refs,snapshots})."""

import os
import subprocess
import sys

import pytest
import torch
from helpers import tiny_checkpoint

from demask.model import load_pretrained, resolve_checkpoint, shipped_models
from demask.model.hub import is_hub_id

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory):
    """A hub cache holding one tiny checkpoint as ``tiny-org/tiny-coder`` (revision main)."""
    cache = tmp_path_factory.mktemp("hub")
    repo = cache / "models--tiny-org--tiny-coder"
    model, _ = tiny_checkpoint(repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return cache, model


def test_shipped_models_are_found_by_name_from_anywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert {"tinycode-mdm", "tinycode-ar"} <= set(shipped_models())
    assert resolve_checkpoint("tinycode-mdm") == shipped_models()["tinycode-mdm"]
    (tmp_path / "tinycode-mdm").mkdir()  # a plain folder of that name does not hide it
    assert resolve_checkpoint("tinycode-mdm") == shipped_models()["tinycode-mdm"]
    (tmp_path / "tinycode-mdm" / "config.json").write_text("{}")  # a checkpoint directory does
    assert resolve_checkpoint("tinycode-mdm").resolve() == tmp_path / "tinycode-mdm"


def test_hub_ids_resolve_from_the_cache_offline(hub_cache):
    cache, model = hub_cache
    path = resolve_checkpoint("tiny-org/tiny-coder", cache_dir=str(cache), offline=True)
    assert path == cache / "models--tiny-org--tiny-coder" / "snapshots" / COMMIT
    loaded, _ = load_pretrained(path)
    torch.testing.assert_close(loaded.state_dict(), model.state_dict())


def test_a_missing_hub_id_offline_says_how_to_get_it(hub_cache):
    cache, _ = hub_cache
    with pytest.raises(
        FileNotFoundError, match="not in the Hugging Face cache and offline mode.*huggingface-cli download"
    ):
        resolve_checkpoint("tiny-org/absent", cache_dir=str(cache), offline=True)


def test_neither_directory_nor_name_nor_id():
    with pytest.raises(FileNotFoundError, match="not a directory, not a shipped model .*tinycode-mdm"):
        resolve_checkpoint("no-such-model")
    assert is_hub_id("apple/DiffuCoder-7B-Instruct") and not is_hub_id("./a/b") and not is_hub_id("a/b/c")


def test_the_command_line_takes_a_hub_id_offline(hub_cache):
    cache, _ = hub_cache
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-m", "demask.cli.main", "generate", "--prompt", "def f(x):", "--gen-length", "8"]
    ok = subprocess.run([*args, "--checkpoint", "tiny-org/tiny-coder"], capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stderr
    assert "forward passes" in ok.stderr
    missing = subprocess.run([*args, "--checkpoint", "tiny-org/absent"], capture_output=True, text=True, env=env)
    assert missing.returncode == 2 and missing.stderr.startswith("error: tiny-org/absent is not in the Hugging Face")


def test_a_tokenizer_from_the_hub_fetches_no_weights(tmp_path, monkeypatch):
    """tokenizer.path may name a hub id (a 7B model's tokenizer): only tokenizer files come."""
    import huggingface_hub

    from demask.model.hub import TOKENIZER_FILES, resolve_tokenizer

    asked = {}

    def fake_download(repo_id, **kw):
        asked.update(kw, repo_id=repo_id)
        return str(tmp_path)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    assert resolve_tokenizer("apple/DiffuCoder-7B-Instruct") == tmp_path
    assert asked["repo_id"] == "apple/DiffuCoder-7B-Instruct" and asked["allow_patterns"] == TOKENIZER_FILES
    assert not any("safetensors" in p for p in asked["allow_patterns"])
    assert resolve_tokenizer("tinycode-block") == shipped_models()["tinycode-block"]
    assert resolve_tokenizer(tmp_path) == tmp_path
    with pytest.raises(FileNotFoundError, match="no tokenizer at no-such-file"):
        resolve_tokenizer("no-such-file")
