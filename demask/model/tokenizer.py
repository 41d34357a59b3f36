"""A thin wrapper over Hugging Face `tokenizers` that knows the special tokens of a dLLM.

Special tokens (mask, pad, eos, bos) are looked up, in this order, from ids in
config.json (``mask_token_id`` ...), from names in tokenizer_config.json / special_tokens_map.json
(``mask_token`` ...), and last from well-known names among the tokenizer's added tokens
(``<|mask|>``, ``<|dlm_pad|>``, ``<|endoftext|>`` ...). No id is ever hard-coded.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

# Names seen in the anchors' tokenizers, tried only when the files name no token.
_KNOWN_NAMES = {
    "mask": ("<|mask|>", "<|mdm_mask|>", "[MASK]", "<mask>"),
    "pad": ("<|dlm_pad|>", "<|pad|>", "<|endoftext|>", "[PAD]", "<pad>"),
    "eos": ("<|endoftext|>", "<|eot_id|>", "</s>", "<|im_end|>", "<eos>"),
    "bos": ("<|startoftext|>", "<s>", "<bos>"),
}


@dataclass
class Tokenizer:
    """Text <-> token ids, with the ids of the special tokens a diffusion decoder needs."""

    backend: HFTokenizer
    mask_token_id: int | None
    pad_token_id: int | None
    eos_token_id: int | None
    bos_token_id: int | None = None
    chat_template: str | None = None
    """tokenizer_config.json's ``chat_template`` (Jinja), as DiffuCoder-Instruct and Dream-Instruct ship one."""

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        return self.backend.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.backend.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def apply_chat_template(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """The prompt text of a conversation, rendered by the checkpoint's chat template (in a
        sandboxed Jinja environment, as transformers renders it)."""
        if not self.chat_template:
            raise ValueError(
                "this tokenizer has no chat template (tokenizer_config.json has no chat_template): "
                "it is not a chat model; generate from a plain prompt instead"
            )
        if not isinstance(messages, list) or not all(isinstance(m, dict) and "role" in m for m in messages):
            raise ValueError("messages must be a list of {'role': ..., 'content': ...} dicts")
        from jinja2.exceptions import TemplateError
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message: str) -> None:
            raise TemplateError(message)

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = raise_exception
        special = {
            f"{role}_token": self.id_to_token(idx) or ""
            for role, idx in (("bos", self.bos_token_id), ("eos", self.eos_token_id), ("pad", self.pad_token_id))
            if idx is not None
        }
        return env.from_string(self.chat_template).render(
            messages=messages, add_generation_prompt=add_generation_prompt, **special
        )

    def token_to_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)

    def id_to_token(self, idx: int) -> str | None:
        return self.backend.id_to_token(idx)

    # ------------------------------------------------------------------ files
    @classmethod
    def from_dir(cls, path: str | Path, config: dict | None = None) -> Tokenizer:
        """Load ``tokenizer.json`` from a checkpoint directory (or the file itself)."""
        path = Path(path)
        file = path / "tokenizer.json" if path.is_dir() else path
        if not file.is_file():
            raise FileNotFoundError(
                f"no tokenizer at {file}: expected tokenizer.json (Hugging Face `tokenizers` "
                "format) in the checkpoint directory"
            )
        backend = HFTokenizer.from_file(str(file))
        folder = file.parent
        if config is None and (folder / "config.json").is_file():
            config = json.loads((folder / "config.json").read_text())
        names: dict[str, str] = {}
        template = None
        for extra in ("special_tokens_map.json", "tokenizer_config.json"):
            if (folder / extra).is_file():
                raw = json.loads((folder / extra).read_text())
                if isinstance(raw.get("chat_template"), str):
                    template = raw["chat_template"]
                for key, value in raw.items():
                    if key.endswith("_token") and value:
                        names[key[: -len("_token")]] = value["content"] if isinstance(value, dict) else value
        ids = {}
        for role in ("mask", "pad", "eos", "bos"):
            ids[role] = _resolve(backend, role, (config or {}).get(f"{role}_token_id"), names.get(role))
        return cls(backend, ids["mask"], ids["pad"], ids["eos"], ids["bos"], template)

    def save(self, path: str | Path) -> None:
        """Write tokenizer.json and a tokenizer_config.json that names the special tokens."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.backend.save(str(path / "tokenizer.json"))
        names = {
            f"{role}_token": self.id_to_token(idx)
            for role, idx in (
                ("mask", self.mask_token_id),
                ("pad", self.pad_token_id),
                ("eos", self.eos_token_id),
                ("bos", self.bos_token_id),
            )
            if idx is not None
        }
        config: dict[str, str | None] = dict(names)
        if self.chat_template:
            config["chat_template"] = self.chat_template
        (path / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")


def _resolve(backend: HFTokenizer, role: str, config_id, name: str | None) -> int | None:
    if isinstance(config_id, list):
        config_id = config_id[0] if config_id else None
    if config_id is not None:
        return int(config_id)
    if name is not None:
        idx = backend.token_to_id(name)
        if idx is None:
            raise ValueError(f"tokenizer files name {name!r} as the {role} token, but tokenizer.json has no such token")
        return idx
    for candidate in _KNOWN_NAMES[role]:
        idx = backend.token_to_id(candidate)
        if idx is not None:
            return idx
    return None


def train_bpe_tokenizer(
    texts: Iterable[str],
    vocab_size: int = 512,
    *,
    mask_token: str = "<|mask|>",
    pad_token: str = "<|pad|>",
    eos_token: str = "<|endoftext|>",
    min_frequency: int = 2,
) -> Tokenizer:
    """Train a small byte-level BPE tokenizer (for tiny models) with the three special tokens.

    Byte-level means every string round-trips, including code whitespace; the special tokens
    get the first ids (eos 0, mask 1, pad 2).
    """
    if vocab_size < 256 + 3:
        raise ValueError(
            f"vocab_size={vocab_size} is below the 256 bytes + 3 special tokens "
            "a byte-level BPE needs; use at least 259"
        )
    backend = HFTokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        show_progress=False,
        special_tokens=[eos_token, mask_token, pad_token],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    backend.train_from_iterator(texts, trainer=trainer)
    return Tokenizer(
        backend,
        mask_token_id=backend.token_to_id(mask_token),
        pad_token_id=backend.token_to_id(pad_token),
        eos_token_id=backend.token_to_id(eos_token),
    )
