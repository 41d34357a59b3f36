"""Where a recipe's training data comes from: registered data sources.

A source turns a recipe's ``data:`` block into three things: texts to train a tokenizer
on, the training examples (tokenized, in the fixed layout of :mod:`demask.training.data`)
and, optionally, held-out tasks to evaluate on.

- ``tinycode``: SFT on the TinyCode training split (prompt -> canonical solution);
  ``options`` are TinyCodeConfig fields; the held-out split is the evaluation set.
- ``jsonl``: SFT from a JSON-lines file with a prompt and a completion per line
  (``options``: prompt_key, completion_key; defaults "prompt", "completion").
- ``source-folder``: pretraining on every file of a folder matching ``patterns``,
  concatenated (an end token after each file) and cut into ``seq_len`` chunks; the path
  ``@stdlib`` names the running Python's standard library.

Not covered: chat templates (prompts are used as written), Hugging Face ``datasets``,
mixing several sources in one run.
"""

from __future__ import annotations

import dataclasses
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from demask.model import ModelConfig, Tokenizer
from demask.registry import Registry, did_you_mean
from demask.tasks.base import Task
from demask.training.data import (
    ExampleData,
    SFTData,
    TokenChunks,
    chunk_documents,
    make_sft_example,
    read_texts,
    source_files,
)


@dataclass
class DataRecipe:
    """The ``data:`` block of a recipe."""

    source: str = "tinycode"
    """Registered data source: tinycode, jsonl or source-folder."""
    path: str | None = None
    """The JSONL file (jsonl) or the folder (source-folder)."""
    completion_length: int = 64
    """SFT: every completion is the answer, the end token, then pad up to this length."""
    drop_long: bool = True
    """SFT: drop examples whose answer does not fit completion_length (their number is
    reported) instead of stopping with an error."""
    max_examples: int | None = None
    """Use only the first this many examples (None = all)."""
    seq_len: int = 256
    """Pretraining: tokens per chunk."""
    patterns: tuple[str, ...] = ("*.py",)
    """Pretraining: file name patterns to read under path (recursively)."""
    max_files: int | None = None
    """Pretraining: read at most this many files (sorted by path)."""
    options: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Source-specific settings (tinycode: TinyCodeConfig fields)."""

    def __post_init__(self) -> None:
        DATA_SOURCES.get(self.source)  # "did you mean" for a misspelt source
        for name in ("completion_length", "seq_len"):
            if getattr(self, name) < 1:
                raise ValueError(f"data.{name} must be positive, got {getattr(self, name)}")
        for name in ("max_examples", "max_files"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"data.{name} must be positive or null (all), got {value}")


class DataSource(ABC):
    name: str

    def __init__(self, recipe: DataRecipe) -> None:
        self.recipe = recipe

    @abstractmethod
    def texts(self) -> list[str]:
        """Texts a tokenizer for this data is trained on."""

    @abstractmethod
    def examples(self, tokenizer: Tokenizer, config: ModelConfig) -> ExampleData:
        """The training examples, tokenized."""

    def eval_tasks(self) -> list[Task] | None:
        """Held-out tasks to evaluate on, if the source has them."""
        return None

    def summary(self) -> str:
        """One line about what was built (examples, dropped ones)."""
        return ""


DATA_SOURCES: Registry[type[DataSource]] = Registry("data source", base=DataSource)


def _end_and_pad(tokenizer: Tokenizer) -> tuple[int, int]:
    if tokenizer.eos_token_id is None or tokenizer.pad_token_id is None:
        raise ValueError(
            f"SFT needs an end token and a pad token; the tokenizer has eos="
            f"{tokenizer.eos_token_id}, pad={tokenizer.pad_token_id}"
        )
    return tokenizer.eos_token_id, tokenizer.pad_token_id


class _SFTSource(DataSource):
    """Shared by the prompt/completion sources: tokenize, add the end token, pad, drop long."""

    dropped = 0
    kept = 0

    @abstractmethod
    def pairs(self) -> list[tuple[str, str]]:
        """(prompt, completion) texts."""

    def texts(self) -> list[str]:
        return [p + c for p, c in self.pairs()]

    def examples(self, tokenizer: Tokenizer, config: ModelConfig) -> ExampleData:
        end, pad = _end_and_pad(tokenizer)
        pairs = self.pairs()
        if self.recipe.max_examples is not None:
            pairs = pairs[: self.recipe.max_examples]
        prompts = tokenizer.encode_batch([p for p, _ in pairs])
        answers = tokenizer.encode_batch([c for _, c in pairs])
        length = self.recipe.completion_length
        out = []
        for prompt, answer in zip(prompts, answers):
            if len(answer) + 1 > length and self.recipe.drop_long:
                self.dropped += 1
                continue
            out.append(make_sft_example(prompt, answer, completion_length=length, end_token_id=end, pad_token_id=pad))
        if not out:
            raise ValueError(f"no example fits completion_length={length}; raise it")
        self.kept = len(out)
        data = SFTData(out, pad)
        if data.width > config.max_position_embeddings:
            raise ValueError(
                f"the longest prompt ({data.max_prompt_length} tokens) plus the completion "
                f"({length}) exceeds the model's context ({config.max_position_embeddings}); "
                "raise max_position_embeddings or shorten completion_length"
            )
        return data

    def summary(self) -> str:
        return (
            f"{self.kept} examples, {self.dropped} dropped (answer longer than "
            f"completion_length={self.recipe.completion_length} - 1)"
        )


@DATA_SOURCES.register("tinycode")
class TinyCodeSource(_SFTSource):
    def __init__(self, recipe: DataRecipe) -> None:
        super().__init__(recipe)
        self._splits = None
        self._held: Any = None  # the held-out splits alone, when the training split is not needed

    @property
    def splits(self):
        if self._splits is None:
            from demask.tasks.tinycode import TinyCodeConfig, build_tinycode

            config = dataclass_from_options(TinyCodeConfig, self.recipe.options, "data.options")
            self._splits = build_tinycode(config)
        return self._splits

    def pairs(self) -> list[tuple[str, str]]:
        return [(t.prompt, t.canonical_solution) for t in self.splits.train]

    def texts(self) -> list[str]:
        from demask.tasks.tinycode import tinycode_corpus

        return tinycode_corpus(self.splits)

    def eval_tasks(self) -> list[Task]:
        """The validation split (v2: settings are chosen on it); v1, which has none, its test split."""
        return self.held_out("validation") or self.held_out("test")

    def held_out(self, split: str) -> list[Task]:
        """The ``validation`` or ``test`` split (empty for v1's validation)."""
        if split not in ("validation", "test"):
            raise ValueError(f"split={split!r} is not 'validation' or 'test' (the held-out TinyCode splits)")
        if self._splits is None and self._held is None:
            # the held-out splits do not depend on n_train: skip generating the training split
            import dataclasses

            from demask.tasks.tinycode import TinyCodeConfig, build_tinycode

            config = dataclass_from_options(TinyCodeConfig, self.recipe.options, "data.options")
            self._held = build_tinycode(dataclasses.replace(config, n_train=0))
        return list(getattr(self._splits or self._held, split))


@DATA_SOURCES.register("jsonl")
class JsonlSource(_SFTSource):
    def __init__(self, recipe: DataRecipe) -> None:
        super().__init__(recipe)
        allowed = {"prompt_key", "completion_key"}
        for key in recipe.options:
            if key not in allowed:
                raise ValueError(
                    f"unknown key data.options.{key} for source 'jsonl'"
                    f"{did_you_mean(key, allowed)} (known: {sorted(allowed)})"
                )
        if recipe.path is None:
            raise ValueError("data.source 'jsonl' needs data.path: a JSON-lines file of prompts and completions")
        self.prompt_key = recipe.options.get("prompt_key", "prompt")
        self.completion_key = recipe.options.get("completion_key", "completion")

    def pairs(self) -> list[tuple[str, str]]:
        assert self.recipe.path is not None  # checked in __init__
        path = Path(self.recipe.path)
        if not path.is_file():
            raise FileNotFoundError(
                f"data.path {path} does not exist (a JSON-lines file with "
                f"{self.prompt_key!r} and {self.completion_key!r} on every line)"
            )
        out = []
        with path.open(encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                row = json.loads(line)
                missing = [k for k in (self.prompt_key, self.completion_key) if k not in row]
                if missing:
                    raise ValueError(
                        f"{path}, line {lineno}: no {missing} key; set data.options."
                        "prompt_key / completion_key to the file's names"
                    )
                out.append((row[self.prompt_key], row[self.completion_key]))
        return out


@DATA_SOURCES.register("source-folder", "folder", "pretrain")
class SourceFolder(DataSource):
    def __init__(self, recipe: DataRecipe) -> None:
        super().__init__(recipe)
        if recipe.path is None:
            raise ValueError("data.source 'source-folder' needs data.path: a folder of source files")
        if recipe.options:
            raise ValueError(f"data.source 'source-folder' takes no options, got {sorted(recipe.options)}")
        self._texts: list[str] | None = None
        self.n_chunks = 0

    def texts(self) -> list[str]:
        if self._texts is None:
            assert self.recipe.path is not None  # checked in __init__
            files = source_files(resolve_path(self.recipe.path), self.recipe.patterns, self.recipe.max_files)
            self._texts = read_texts(files)
        return self._texts

    def examples(self, tokenizer: Tokenizer, config: ModelConfig) -> ExampleData:
        if self.recipe.seq_len > config.max_position_embeddings:
            raise ValueError(
                f"data.seq_len={self.recipe.seq_len} exceeds the model's context "
                f"({config.max_position_embeddings}); lower it or raise max_position_embeddings"
            )
        chunks = chunk_documents(tokenizer.encode_batch(self.texts()), self.recipe.seq_len, tokenizer.eos_token_id)
        if self.recipe.max_examples is not None:
            chunks = chunks[: self.recipe.max_examples]
        self.n_chunks = chunks.shape[0]
        return TokenChunks(chunks)

    def summary(self) -> str:
        return f"{len(self.texts())} files, {self.n_chunks} chunks of {self.recipe.seq_len} tokens"


def resolve_path(path: str) -> Path:
    """``@stdlib`` (optionally ``@stdlib/sub/folder``) is the running Python's standard library
    folder, so a recipe can name it on any machine; other paths are used as written."""
    if path == "@stdlib" or path.startswith("@stdlib/"):
        import os

        return Path(os.path.dirname(os.__file__), path[len("@stdlib/") :] if "/" in path else "")
    return Path(path)


def dataclass_from_options(cls: type, options: dict[str, Any], where: str) -> Any:
    """``cls(**options)`` with unknown keys named (and the closest field suggested);
    lists become tuples where the field's default is a tuple."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in options.items():
        if key not in fields:
            raise ValueError(
                f"unknown key {where}.{key}{did_you_mean(key, fields)} (known: {', '.join(sorted(fields))})"
            )
        default = fields[key].default
        kwargs[key] = tuple(value) if isinstance(value, list) and isinstance(default, tuple) else value
    return cls(**kwargs)


def build_source(recipe: DataRecipe) -> DataSource:
    return DATA_SOURCES.get(recipe.source)(recipe)
