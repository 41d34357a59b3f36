"""The backbone, its config, HF-layout checkpoints and the tokenizer. Imports nothing else of demask."""

from demask.model.checkpoint import load_model, load_pretrained, read_config, save_pretrained
from demask.model.config import ModelConfig
from demask.model.hub import resolve_checkpoint, shipped_models
from demask.model.tokenizer import Tokenizer, train_bpe_tokenizer
from demask.model.transformer import KVCache, Transformer, token_logits

__all__ = [
    "KVCache",
    "ModelConfig",
    "Tokenizer",
    "Transformer",
    "load_model",
    "load_pretrained",
    "read_config",
    "resolve_checkpoint",
    "save_pretrained",
    "shipped_models",
    "token_logits",
    "train_bpe_tokenizer",
]
