"""Use a model in a few lines: :func:`load` and :class:`LLM`.

    import demask

    llm = demask.load("tinycode-block")          # a shipped model, a checkpoint folder or a hub id
    print(llm.generate(prompt))                  # text in, text out, with the model's best decoder
    llm.generate([p1, p2], temperature=0.8, seed=1)         # a batch; any DecodeConfig field
    for state in llm.stream(prompt):             # the denoising as it happens
        print(state.step, state.text)
    llm.chat([{"role": "user", "content": "Write a function ..."}])   # a chat model's template
    llm.infill(prefix, suffix, max_new_tokens=12)  # fill-in-the-middle, a middle of 12 tokens
    llm.infill(prefix, suffix)                   # ... of the length the model finds likeliest

Defaults: the decoder the model ships in its ``decoders.json`` ("best", chosen on validation),
else one token per step by confidence for a diffusion model (left to right with a KV cache for
an autoregressive one), greedy; the completion length is the decoder's, else the longest that
fits the context (at most 256). Options are :class:`~demask.decoding.DecodeConfig` fields
(``max_new_tokens`` is ``gen_length``); a wrong one is named with the closest known.

Serving: ``demask serve`` (demask.serving) puts an LLM behind an OpenAI-compatible server.
"""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch

MASK_GLYPH = "\u2591"
"""How a still-masked position shows in :attr:`StreamState.text`."""


@dataclass
class StreamState:
    """The completion after one forward pass of :meth:`LLM.stream`."""

    step: int
    """Forward passes so far."""
    committed: list[int]
    """Completion positions committed by this step."""
    tokens: list[int | None]
    """Every completion position's token (None: still masked)."""
    text: str
    """The completion so far up to its first committed end token, masked positions shown as
    ``MASK_GLYPH`` (the last state: the final completion)."""
    done: bool = False
    """The last state: the completion as :meth:`LLM.generate` returns it is ``final``."""
    final: str | None = None


@dataclass
class LLM:
    """A model with its tokenizer and default decoder (see the module docstring)."""

    model: torch.nn.Module
    tokenizer: Any
    name: str = ""
    decoders: dict[str, Any] = field(default_factory=dict)
    """The model's decoders.json (empty when it ships none)."""
    completion_length: int | None = None
    """The completion length the checkpoint was trained for (its recipe.yaml), when known."""

    # ------------------------------------------------------------------ decoding options
    @property
    def config(self) -> Any:
        """The model's ModelConfig."""
        return self.model.config

    @property
    def context_length(self) -> int:
        return int(self.config.max_position_embeddings)

    def decode_config(self, prompt_tokens: int = 0, **options: Any):
        """The DecodeConfig for one call: the model's defaults, then ``options``."""
        from demask.decoding import DecodeConfig

        options = dict(options)
        if "max_new_tokens" in options:
            options["gen_length"] = options.pop("max_new_tokens")
        base: dict[str, Any] = dict(self.decoders.get("best") or {})
        if not base:  # one token per step (steps None), as long as the context allows
            base = {"gen_length": max(8, min(256, self.context_length - prompt_tokens))}
            if self.config.causal:
                base["cache"] = "prefix"
        if self.config.causal:  # policies, steps and blocks do not apply left to right
            base = {k: v for k, v in base.items() if k in ("gen_length", "cache")}
        if "policy" in options:  # another policy: not the default one's knobs or budget
            base.pop("policy_options", None)
            base.pop("steps", None)
        if "gen_length" in options:
            base.pop("steps", None)
        merged = {"temperature": 0.0, **base, **options}
        return DecodeConfig.from_dict(merged)

    def _encode(self, prompts: str | Sequence[str]) -> tuple[list[list[int]], bool]:
        single = isinstance(prompts, str)
        texts = [prompts] if single else prompts
        if not isinstance(texts, (list, tuple)) or not all(isinstance(t, str) for t in texts) or not texts:
            raise TypeError(
                f"prompt must be a str or a non-empty list of str, got {type(prompts).__name__}"
                + ("" if single or not isinstance(prompts, (list, tuple)) else " with other items")
            )
        return [self.tokenizer.encode(t) for t in texts], single

    def _check_room(self, encoded: list[list[int]], gen_length: int) -> None:
        longest = max(len(e) for e in encoded)
        total, room = longest + gen_length, self.context_length - longest
        if total > self.context_length:
            fix = (
                f"pass max_new_tokens (gen_length) <= {room} or a shorter prompt"
                if room > 0
                else "shorten the prompt: it alone fills the context"
            )
            raise ValueError(
                f"a prompt of {longest} tokens plus {gen_length} new tokens is {total} tokens, more than the model's "
                f"context of {self.context_length}{f' ({self.name})' if self.name else ''}; {fix}"
            )

    # ------------------------------------------------------------------ text in, text out
    def generate(self, prompt: str | Sequence[str], *, seed: int | None = 0, on_step: Any = None, **options: Any):
        """The completion of ``prompt`` (a str) or of each prompt (a list, decoded as one batch).

        seed: the decoding's random seed (None: fresh randomness); options: DecodeConfig
        fields (``temperature``, ``policy``, ``policy_options``, ``block_length``, ``cache``,
        ``max_new_tokens`` ...); on_step: called with each step's record (see ``stream``)."""
        encoded, single = self._encode(prompt)
        config = self.decode_config(max(len(e) for e in encoded), **options)
        out = self.decode(encoded, config, seed=seed, on_step=on_step)
        texts = [self.tokenizer.decode(c) for c in out.completions]
        return texts[0] if single else texts

    def decode(self, prompts: Sequence[Sequence[int]], config: Any, *, seed: int | None = 0, on_step: Any = None):
        """The token-level call under ``generate``: ``prompts`` as token ids, a whole
        DecodeConfig; returns the DecodeOutput (completions, NFE, trace when config.trace)."""
        from demask.decoding import generate

        encoded = [list(p) for p in prompts]
        self._check_room(encoded, config.gen_length)
        device = next((p.device for p in self.model.parameters()), torch.device("cpu"))
        gen = None if seed is None else torch.Generator(device=device).manual_seed(seed)
        return generate(self.model, encoded, config, generator=gen, on_step=on_step)

    def stream(self, prompt: str, *, seed: int | None = 0, **options: Any) -> Iterator[StreamState]:
        """The denoising of one prompt as it happens: a :class:`StreamState` after every forward
        pass (which positions it committed, the text so far), then a last one with ``done``."""
        if not isinstance(prompt, str):
            raise TypeError(f"stream takes one prompt (a str), got {type(prompt).__name__}; use generate for a batch")
        states: queue.Queue = queue.Queue()
        config = self.decode_config(len(self.tokenizer.encode(prompt)), **options)
        canvas: list[int | None] = [None] * config.gen_length
        pieces: list[str] = [MASK_GLYPH] * config.gen_length
        count = [0]
        ends = {i for i in (self.config.eos_token_id, self.config.pad_token_id) if i is not None}

        def text() -> str:  # up to the first committed end token, masks shown
            out = []
            for tok, piece in zip(canvas, pieces):
                if tok is not None and tok in ends:
                    break
                out.append(piece)
            return "".join(out)

        def on_step(record: Any) -> None:
            count[0] += 1
            rows = record.rows.tolist()
            if 0 not in rows:
                return
            j = rows.index(0)
            cols = record.commit[j].nonzero().flatten().tolist()
            committed = [record.offset + c for c in cols]
            for c, pos in zip(cols, committed):
                tok = int(record.tokens[j, c])
                canvas[pos] = tok
                pieces[pos] = self.tokenizer.decode([tok], skip_special_tokens=False)
            states.put(StreamState(count[0], committed, list(canvas), text()))

        def run() -> None:
            try:
                final = self.generate(prompt, seed=seed, on_step=on_step, **options)
                states.put(StreamState(count[0], [], list(canvas), final, done=True, final=final))
            except BaseException as exc:  # re-raised in the caller's thread
                states.put(exc)

        worker = threading.Thread(target=run, name="demask-stream", daemon=True)
        worker.start()
        while True:
            item = states.get()
            if isinstance(item, BaseException):
                raise item
            yield item
            if item.done:
                break
        worker.join()

    def infill(
        self,
        prefix: str | Sequence[int] | Sequence[str] | Sequence[Sequence[int]],
        suffix: str | Sequence[int] | Sequence[str] | Sequence[Sequence[int]],
        *,
        max_new_tokens: int | None = None,
        lengths: Sequence[int] | None = None,
        score: str = "joint",
        end: bool = True,
        layout: int | Sequence[int] | None = None,
        seed: int | None = 0,
        **options: Any,
    ):
        """The middle between ``prefix`` and ``suffix`` (or one per pair of lists, as a batch).

        ``max_new_tokens``: a middle of exactly that many tokens. Without it the length is
        the model's choice among ``lengths`` (default 1 to 32 tokens): the middle is decoded
        at every length and the one whose tokens the model was surest of wins (``score``
        "mean": the highest mean log-probability of its tokens at their commit; "sum": the
        highest total; "joint": the total plus the log-probability of the suffix given the
        middle, the suffix masked and scored in one more forward). A one-forward shortcut
        (scoring each length by the first step's confidences) picked a single token every time
        on TinyCode (docs/infilling.md).
        Prefix and suffix are kept byte for byte: only the middle is returned.
        Options are DecodeConfig fields; the default decoder is one token per step by
        confidence over the whole middle (no blocks, no cache). A full-attention diffusion
        model only: an autoregressive or block-causal one never sees the suffix.

        The row is laid out as the model was trained (docs/infilling.md): with ``end`` the
        suffix ends the text, so the end token follows it, then pad tokens up to ``layout``
        tokens after the prefix (default: the completion length the checkpoint was trained
        for, when its recipe.yaml says; one per row for a batch; a model trained on fixed-length completions reads
        the length of the rest as a position signal). Prefix and suffix may be given as token
        ids instead of text, for exact control of the tokenization at their boundaries (a
        prompt and the start of its solution are tokenized apart in training)."""
        from demask.decoding import generate

        single = isinstance(prefix, str) or (isinstance(prefix, (list, tuple)) and bool(prefix)
                                             and isinstance(prefix[0], int))  # fmt: skip
        pre, suf = self._infill_inputs(prefix, suffix)
        if score not in ("mean", "sum", "joint"):
            raise ValueError(f"score must be 'mean', 'sum' or 'joint', got {score!r}")
        if max_new_tokens is not None:
            candidates = [max_new_tokens]
        else:
            candidates = list(lengths) if lengths is not None else list(range(1, 33))
        if not candidates or min(candidates) < 1:
            raise ValueError(f"middle lengths must be positive token counts, got {candidates}")
        if any(not p for p in pre):
            raise ValueError("an empty prefix: infilling needs at least one token before the middle")
        eos, pad = self.config.eos_token_id, self.config.pad_token_id
        if end and eos is not None:
            suf = [[*s, eos] for s in suf]
        given = layout if layout is not None else (self.completion_length if end else None)
        layouts: list[int | None] = (
            list(given) if isinstance(given, (list, tuple)) else [cast(int | None, given)] * len(pre)
        )
        if len(layouts) != len(pre):
            raise ValueError(f"{len(layouts)} layouts for {len(pre)} rows: give one per row or one for all")
        rooms = [self.context_length - len(a) - len(b) for a, b in zip(pre, suf)]
        if min(candidates) > min(rooms):
            raise ValueError(
                f"prefix and suffix leave {min(rooms)} tokens of {self.name or 'the model'}'s context of "
                f"{self.context_length} for the middle; ask for at most {max(min(rooms), 0)} "
                "(max_new_tokens or lengths)"
            )
        device = next(self.model.parameters()).device
        best: list[tuple[float, list[int]]] = [(-float("inf"), [])] * len(pre)

        def run(m: int, rows: list[int]) -> None:
            """Decode a middle of m tokens for ``rows``; keep each row's best-scoring one."""
            defaults = {"policy": "confidence", "steps": None, "block_length": None, "cache": "none"}
            config = self.decode_config(0, **{**defaults, **options, "gen_length": m})
            if len(candidates) > 1:
                config = config.replace(trace=True)
            padded = {i: suf[i] for i in rows}
            if pad is not None:  # the rest of the row as long as in training, never past the context
                ctx = self.context_length
                for i in rows:
                    n = layouts[i]
                    if n is not None:
                        padded[i] = suf[i] + [pad] * max(0, min(n, ctx - len(pre[i])) - m - len(suf[i]))
            for group in self._infill_groups(pre, padded, m, rows):  # batches that fit the context
                gen = None if seed is None else torch.Generator(device=device).manual_seed(seed)
                out = generate(self.model, [pre[i] for i in group], config, generator=gen,
                               suffixes=[padded[i] for i in group])  # fmt: skip
                middles = out.tokens[:, out.prompt_length : out.prompt_length + m].tolist()
                tail = self._suffix_logprob(group, pre, middles, padded, suf) if score == "joint" else None
                for j, (i, tokens) in enumerate(zip(group, middles)):
                    value = 0.0
                    if out.trace is not None:
                        logs = [math.log(max(c, 1e-12)) for st in out.trace.row(j).steps for c in st.confidences]
                        value = sum(logs) / max(len(logs), 1) if score == "mean" else sum(logs)
                    if tail is not None:
                        value += tail[j]
                    if value > best[i][0]:
                        best[i] = (value, tokens)

        for m in candidates:
            run(m, list(range(len(pre))))
        if any(not tokens for _, tokens in best):
            raise ValueError(f"no middle length of {candidates} fits the context for some prefix and suffix")
        texts = [self.tokenizer.decode(tokens) for _, tokens in best]
        return texts[0] if single else texts

    @torch.no_grad()
    def _suffix_logprob(
        self, group: list[int], pre: list[list[int]], middles: list[list[int]], padded: dict[int, list[int]],
        suf: list[list[int]],
    ) -> list[float]:  # fmt: skip
        """Per row of ``group``: log p(suffix | prefix, middle), the suffix (and its end token)
        masked all at once and scored in one forward."""
        from demask.decoding.batch import build_batch
        from demask.model.transformer import token_logits

        mask_id = self.config.mask_token_id
        rows = [pre[i] + middles[j] + [mask_id] * len(suf[i]) + padded[i][len(suf[i]) :] for j, i in enumerate(group)]
        pad = self.config.pad_token_id if self.config.pad_token_id is not None else 0
        device = next(self.model.parameters()).device
        batch = build_batch(rows, 0, mask_id, pad, device)
        logits = token_logits(self.model(batch.tokens, attention_mask=batch.attention, position_ids=batch.positions),
                              bool(self.config.shift_logits)).float().log_softmax(-1)  # fmt: skip
        out = []
        for j, i in enumerate(group):
            start = batch.prompt_length - len(rows[j]) + len(pre[i]) + len(middles[j])
            cols = torch.arange(start, start + len(suf[i]), device=device)
            target = torch.tensor(suf[i], device=device)
            out.append(float(logits[j, cols, target].sum()))
        return out

    def _infill_groups(
        self, pre: list[list[int]], suf: dict[int, list[int]], m: int, rows: list[int]
    ) -> list[list[int]]:
        """Of ``rows``, those whose middle of ``m`` tokens fits, in batches (sorted by prefix
        length) whose left- and right-padded layout (longest prefix + m + longest suffix) fits too."""
        ctx = self.context_length
        fits = sorted((i for i in rows if len(pre[i]) + m + len(suf[i]) <= ctx), key=lambda i: len(pre[i]))
        groups: list[list[int]] = []
        for i in fits:
            if groups and len(pre[i]) + m + max(len(suf[k]) for k in [*groups[-1], i]) <= ctx:
                groups[-1].append(i)
            else:
                groups.append([i])
        return groups

    def _infill_inputs(self, prefix: Any, suffix: Any) -> tuple[list[list[int]], list[list[int]]]:
        """Token ids of each prefix and suffix: text is encoded, token ids kept."""

        def one(x: Any) -> list[int] | None:
            if isinstance(x, str):
                return self.tokenizer.encode(x) if x else []
            if isinstance(x, (list, tuple)) and all(isinstance(t, int) for t in x):
                return list(x)
            return None

        pair = one(prefix), one(suffix)
        if pair[0] is not None and pair[1] is not None:
            return [pair[0]], [pair[1]]
        if isinstance(prefix, (list, tuple)) and isinstance(suffix, (list, tuple)) and len(prefix) == len(suffix) > 0:
            pres, sufs = [one(x) for x in prefix], [one(x) for x in suffix]
            if all(x is not None for x in pres + sufs):
                return cast(list[list[int]], pres), cast(list[list[int]], sufs)
        raise TypeError(
            "infill takes prefix and suffix as two str (or two token-id lists), or two equally long non-empty lists "
            f"of those; got {type(prefix).__name__} and {type(suffix).__name__}"
        )

    def chat(self, messages: list[dict[str, str]], **options: Any) -> str:
        """The model's reply to ``messages``, through the tokenizer's chat template."""
        prompt = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True)
        return self.generate(prompt, **options)


def load(spec: str | Path, *, dtype: str | None = None, device: str = "cpu") -> LLM:
    """A model by name (``tinycode-mdm``), checkpoint folder or Hugging Face hub id, ready to
    generate; ``dtype`` (float32, bfloat16 ...; None: as stored) and ``device`` as for
    :func:`demask.model.load_pretrained`."""
    import json

    from demask.model import load_pretrained
    from demask.model.hub import resolve_checkpoint

    if not isinstance(spec, (str, Path)):
        raise TypeError(f"load takes a model name, a folder or a hub id (str or Path), got {type(spec).__name__}")
    path = resolve_checkpoint(spec)
    model, tokenizer = load_pretrained(path, dtype=dtype, device=device)
    model.eval()
    decoders_file = Path(path) / "decoders.json"
    decoders = json.loads(decoders_file.read_text()) if decoders_file.is_file() else {}
    from demask.model.hub import saved_completion_length

    return LLM(model, tokenizer, str(spec), decoders, saved_completion_length(path))
