"""Requests decoded together: a queue in front of one decoding thread (dynamic batching).

A request becomes a :class:`Job` (its prompt rows, its DecodeConfig, its seed, an optional
per-step callback for streaming). The decoding thread takes the oldest job and every other
queued job that can share its forward passes (the same DecodeConfig apart from the seed,
and, when tokens are sampled with a fixed seed, only that job: a shared batch would draw
its random numbers differently), up to ``max_rows`` prompt rows, and decodes them as one
batch of :func:`demask.decoding.generate`. With ``wait_ms`` > 0 it first waits that long
after the oldest job arrived (or until ``max_rows`` rows queued) so that requests sent at
nearly the same time share a decode: a lone request pays ``wait_ms`` more latency. Rows of
a batch decode independently (left padding, their own early stop), so a greedy request gets
the same completion alone or in a batch (tests/test_serving.py).

What this is not: iteration-level ("continuous") batching. A request arriving while a batch
decodes waits for that batch's end (at most one decode, ~the latency of a lone request on the
shipped models) and then starts with everything else that queued meanwhile.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import torch

StepCallback = Callable[[int, list[int], list[int]], None]
"""``on_step(row, positions, tokens)``: the job's row ``row`` committed ``tokens`` at completion
``positions`` in the forward pass just run."""


@dataclass
class JobResult:
    completions: list[list[int]]
    """Per row: the completion's token ids, cut at its first end token."""
    nfe: list[int]
    batch_rows: int
    """How many prompt rows shared the decode (this job's and others')."""


class JobFuture(Future):
    """A job's future; ``job`` lets the server abandon it (:meth:`Batcher.abandon`)."""

    job: Job


@dataclass
class Job:
    prompts: list[list[int]]
    config: Any
    """A DecodeConfig."""
    seed: int | None = None
    on_step: StepCallback | None = None
    future: JobFuture = field(default_factory=JobFuture)
    call: Callable[[], Any] | None = None
    """A job that is a function to run in the decoding thread by itself (fill-in-the-middle)."""

    abandoned: bool = False
    """Set when the client went away: its step callback stops (the decode itself goes on)."""

    def __post_init__(self) -> None:
        self.future.job = self

    def key(self) -> str:
        """Jobs with equal keys may share one decode."""
        if self.call is not None:
            return f"call-{id(self)}"
        settings = dataclasses.asdict(self.config)
        settings.pop("seed", None)
        if self.seed is not None and draws_random_numbers(self.config):
            settings["__alone__"] = id(self)  # its own random draws: decoded by itself
        return json.dumps(settings, sort_keys=True, default=repr)


def draws_random_numbers(config: Any) -> bool:
    """Whether a decode with ``config`` uses its generator (so a batch would change a seeded
    request's draws): sampled tokens, a random or stochastic policy."""
    options = config.policy_options or {}
    if config.temperature > 0 or float(options.get("alg_temp") or 0) > 0:
        return True
    name = config.policy if isinstance(config.policy, str) else type(config.policy).__name__
    return name in ("random", "learned", "LearnedPolicy") and not options.get("deterministic", False)


class Batcher:
    """One decoding thread for ``model``; :meth:`submit` from any thread."""

    def __init__(
        self, model: torch.nn.Module, max_rows: int = 32, max_queued_rows: int = 1024, wait_ms: float = 0.0
    ) -> None:
        if max_rows < 1:
            raise ValueError(f"max_rows must be at least 1, got {max_rows}")
        if wait_ms < 0:
            raise ValueError(f"wait_ms must be >= 0, got {wait_ms}")
        self.model, self.max_rows, self.max_queued_rows = model, max_rows, max_queued_rows
        self.wait_s = wait_ms / 1000
        self._queue: deque[Job] = deque()
        self._cv = threading.Condition()
        self._closing = False
        self.batches = 0
        """Decodes run so far (for tests and the load benchmark)."""
        self._thread = threading.Thread(target=self._work, name="demask-batcher", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ clients
    def submit(self, prompts: Sequence[Sequence[int]], config: Any, seed: int | None = None,
               on_step: StepCallback | None = None) -> Future:  # fmt: skip
        """Queue a job; its future gets a :class:`JobResult` (or the decoder's exception)."""
        if not prompts:
            raise ValueError("a job needs at least one prompt")
        if len(prompts) > self.max_rows:
            raise ValueError(f"{len(prompts)} completions in one request, more than the server's {self.max_rows}")
        job = Job([list(p) for p in prompts], config, seed, on_step)
        with self._cv:
            if self._closing:
                raise RuntimeError("the server is shutting down")
            queued = sum(len(j.prompts) for j in self._queue)
            if queued + len(prompts) > self.max_queued_rows:
                raise OverflowError(
                    f"{queued} completions are already queued (limit {self.max_queued_rows}); retry later"
                )
            self._queue.append(job)
            self._cv.notify()
        return job.future

    def call(self, fn: Callable[[], Any]) -> Future:
        """Run ``fn()`` in the decoding thread, between batches (the model is used by one
        thread at a time); its future gets what it returns."""
        job = Job([[0]], None, call=fn)
        with self._cv:
            queued = sum(len(j.prompts) for j in self._queue)
            if queued + 1 > self.max_queued_rows:
                limit = self.max_queued_rows
                raise OverflowError(f"{queued} completions are already queued (limit {limit}); retry later")
            if self._closing:
                raise RuntimeError("the server is shutting down")
            self._queue.append(job)
            self._cv.notify()
        return job.future

    @staticmethod
    def abandon(future: Future) -> None:
        """The client is gone: a queued job is dropped, a running one streams no more."""
        if not future.cancel() and isinstance(future, JobFuture):
            future.job.abandoned = True

    def close(self, timeout: float | None = None) -> None:
        """Finish every queued job, then stop the thread."""
        with self._cv:
            self._closing = True
            self._cv.notify()
        self._thread.join(timeout)

    # ------------------------------------------------------------------ the decoding thread
    def _take(self) -> list[Job] | None:
        with self._cv:
            while not self._queue and not self._closing:
                self._cv.wait()
            if not self._queue:
                return None
            deadline = time.monotonic() + self.wait_s  # let requests sent together arrive together
            while not self._closing and sum(len(j.prompts) for j in self._queue) < self.max_rows:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cv.wait(left)
            first = self._queue.popleft()
            jobs, rows, key = [first], len(first.prompts), first.key()
            for job in list(self._queue):
                if rows + len(job.prompts) <= self.max_rows and job.key() == key:
                    self._queue.remove(job)
                    jobs.append(job)
                    rows += len(job.prompts)
            return jobs

    def _work(self) -> None:
        while (jobs := self._take()) is not None:
            live = [j for j in jobs if j.future.set_running_or_notify_cancel()]
            if not live:
                continue
            if live[0].call is not None:
                try:
                    live[0].future.set_result(live[0].call())
                except BaseException as exc:
                    live[0].future.set_exception(exc)
                continue
            try:
                results = self._decode(live)
            except BaseException as exc:  # every job of the batch learns why
                for job in live:
                    job.future.set_exception(exc)
                continue
            for job, result in zip(live, results):
                job.future.set_result(result)

    def _decode(self, jobs: list[Job]) -> list[JobResult]:
        from demask.decoding import generate

        prompts = [p for job in jobs for p in job.prompts]
        owner = [(job, i) for job in jobs for i in range(len(job.prompts))]
        device = next(self.model.parameters()).device
        seed = jobs[0].seed if jobs[0].seed is not None else int(torch.randint(0, 2**62, (1,)).item())
        generator = torch.Generator(device=device).manual_seed(seed)
        on_step = None
        if any(job.on_step is not None for job in jobs):

            def on_step(record: Any) -> None:
                commit = record.commit.cpu()
                tokens = record.tokens.cpu()
                for k, row in enumerate(record.rows.tolist()):
                    job, i = owner[row]
                    if job.on_step is None or job.abandoned:
                        continue
                    cols = commit[k].nonzero().flatten().tolist()
                    if cols:
                        try:
                            job.on_step(i, [record.offset + c for c in cols], [int(tokens[k, c]) for c in cols])
                        except Exception:  # that client's stream is gone: the batch goes on
                            job.abandoned = True

        out = generate(self.model, prompts, jobs[0].config, generator=generator, on_step=on_step)
        self.batches += 1
        results, at = [], 0
        for job in jobs:
            n = len(job.prompts)
            results.append(JobResult(out.completions[at : at + n], out.nfe[at : at + n], len(prompts)))
            at += n
        return results
