"""evaluate() resumes exactly with a batch-dependent sampler, survives SIGKILL, and allows one writer.

The sampler here behaves like ``decoding_sampler`` in its batched mode: one random stream per
call, seeded from the combined seeds of the whole batch, so a row's completion depends on the
batch it is drawn in. A resumed run equals an uninterrupted one only if every batch is
replayed with the same prompts and seeds.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from demask.evaluation import SampleOutput, evaluate
from demask.evaluation.runner import LOCK_OWNER_FILE, RUN_FILE, SAMPLES_FILE, write_json
from demask.evaluation.sampler import _combined_seed
from demask.evaluation.samples import read_samples
from demask.execution.types import ExecutionResult, Verdict
from demask.tasks.base import Task

TASKS = [Task(f"K/{k}", f"def f{k}(x):\n", ("assert True",), f"f{k}") for k in range(10)]
TIMING_FIELDS = ("seconds", "exec_seconds")


class PassAll:
    """A sandbox that passes every program at once (the scores are not what is tested here)."""

    def __init__(self) -> None:
        self.programs = 0

    def run_many(self, programs):
        self.programs += len(programs)
        for i, _ in enumerate(programs):
            yield i, ExecutionResult(Verdict.PASSED, 1, 1, [Verdict.PASSED])


class BatchSampler:
    """Row i's completion depends on all the batch's seeds (like the batched decoding sampler)."""

    def __init__(self, crash_after_calls: int | None = None, pause_s: float = 0.0, gate=None) -> None:
        self.calls: list[tuple[list[str], list[int]]] = []
        self.crash_after_calls = crash_after_calls
        self.pause_s = pause_s
        self.gate = gate  # (entered, release) events: blocks the first call until released

    def __call__(self, prompts, seeds):
        if self.crash_after_calls is not None and len(self.calls) >= self.crash_after_calls:
            raise RuntimeError("sampler crashed")
        if self.gate is not None and not self.calls:
            entered, release = self.gate
            entered.set()
            assert release.wait(30)
        self.calls.append((list(prompts), list(seeds)))
        rng = random.Random(_combined_seed(list(seeds)))
        time.sleep(self.pause_s)
        return [SampleOutput(f"    return {rng.getrandbits(40)}\n", nfe=3, num_tokens=2) for _ in prompts]


def records_by_key(path: Path) -> dict[tuple[str, int], dict]:
    out = {}
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        for key in TIMING_FIELDS:
            rec.pop(key, None)
        key = (rec["task_id"], rec["sample_index"])
        assert key not in out, f"{key} written twice"
        out[key] = rec
    return out


def cut_samples(path: Path, keep_lines: int, half_line: bool) -> None:
    """Keep the first ``keep_lines`` lines, and optionally half of the next one (a kill mid-write)."""
    lines = path.read_text().splitlines(keepends=True)
    text = "".join(lines[:keep_lines])
    if half_line:
        text += lines[keep_lines][: len(lines[keep_lines]) // 2]
    path.write_text(text)


def test_the_sampler_here_is_batch_dependent():
    a = BatchSampler()(["p", "q"], [1, 2])
    b = BatchSampler()(["p", "q"], [1, 3])
    assert a[0] != b[0]  # the same row (prompt, seed) gives another completion in another batch


@pytest.mark.parametrize(
    "crash_after, keep_lines, half_line",
    [
        (2, None, False),  # whole batches on file
        (4, 3 * 4 + 3, True),  # a kill in the middle of writing the 4th batch's last line
        (3, 2, False),  # the first batch only partly written
    ],
)
def test_resume_replays_unfinished_batches_whole(tmp_path, crash_after, keep_lines, half_line):
    n, batch_size = 3, 4
    full_sampler = BatchSampler()
    evaluate(TASKS, full_sampler, n, tmp_path / "full", PassAll(), batch_size=batch_size, ks=(1,))
    assert len(full_sampler.calls) == 8  # 30 samples in batches of 4

    part = tmp_path / "part"
    with pytest.raises(RuntimeError, match="sampler crashed"):
        evaluate(TASKS, BatchSampler(crash_after), n, part, PassAll(), batch_size=batch_size, ks=(1,))
    if keep_lines is not None:
        cut_samples(part / SAMPLES_FILE, keep_lines, half_line)
    written = len(read_samples(part / SAMPLES_FILE).records)
    first_unfinished = written // batch_size

    sandbox = PassAll()
    again = BatchSampler()
    res = evaluate(TASKS, again, n, part, sandbox, batch_size=batch_size, ks=(1,))
    # the same calls as the uninterrupted run made from the first unfinished batch on
    assert again.calls == full_sampler.calls[first_unfinished:]
    assert sandbox.programs == n * len(TASKS) - written  # only the missing samples are executed
    assert records_by_key(part / SAMPLES_FILE) == records_by_key(tmp_path / "full" / SAMPLES_FILE)
    assert res["num_samples"] == n * len(TASKS)


def test_more_samples_later_then_a_crash_resumes_exactly(tmp_path):
    def extend(out, sampler):
        evaluate(TASKS, BatchSampler(), 2, out, PassAll(), batch_size=8, ks=(1,))
        return evaluate(TASKS, sampler, 5, out, PassAll(), batch_size=8, ks=(1,))

    extend(tmp_path / "full", BatchSampler())
    with pytest.raises(RuntimeError, match="sampler crashed"):
        extend(tmp_path / "part", BatchSampler(crash_after_calls=2))
    cut_samples(tmp_path / "part" / SAMPLES_FILE, 20 + 8 + 3, True)
    more = BatchSampler()
    evaluate(TASKS, more, 5, tmp_path / "part", PassAll(), batch_size=8, ks=(1,))
    assert records_by_key(tmp_path / "part" / SAMPLES_FILE) == records_by_key(tmp_path / "full" / SAMPLES_FILE)
    # the 30 added samples form their own batches (8, 8, 8, 6): the second is replayed whole
    # with the two after it; the first 20 samples are not drawn again
    assert [len(s) for _, s in more.calls] == [8, 8, 6]
    run = json.loads((tmp_path / "part" / RUN_FILE).read_text())
    assert run["batch_size"] == 8 and run["sample_ranges"] == [[0, 2], [2, 5]]


def test_fewer_samples_after_a_crash_draws_whole_batches_but_writes_only_the_wanted(tmp_path):
    evaluate(TASKS, BatchSampler(), 4, tmp_path / "full", PassAll(), batch_size=8, ks=(1,))
    with pytest.raises(RuntimeError, match="sampler crashed"):
        evaluate(TASKS, BatchSampler(crash_after_calls=1), 4, tmp_path / "part", PassAll(), batch_size=8, ks=(1,))
    res = evaluate(TASKS, BatchSampler(), 2, tmp_path / "part", PassAll(), batch_size=8, ks=(1,))
    assert res["num_samples"] == 20
    got = records_by_key(tmp_path / "part" / SAMPLES_FILE)
    full = records_by_key(tmp_path / "full" / SAMPLES_FILE)
    assert set(got) == {k for k in full if k[1] < 2} | set(list(full)[:8])
    assert all(got[k] == full[k] for k in got)
    # and later the rest, still equal to the uninterrupted run
    evaluate(TASKS, BatchSampler(), 4, tmp_path / "part", PassAll(), batch_size=8, ks=(1,))
    assert records_by_key(tmp_path / "part" / SAMPLES_FILE) == full


def test_another_batch_size_is_refused_once_samples_exist(tmp_path):
    with pytest.raises(RuntimeError, match="sampler crashed"):
        evaluate(TASKS, BatchSampler(crash_after_calls=1), 2, tmp_path, PassAll(), batch_size=8)
    with pytest.raises(ValueError, match=r"batch size 8.*now 4.*--batch-size 8"):
        evaluate(TASKS, BatchSampler(), 2, tmp_path, PassAll(), batch_size=4)
    assert len(records_by_key(tmp_path / SAMPLES_FILE)) == 8  # nothing was touched


def test_a_run_that_failed_before_any_sample_leaves_a_reusable_folder(tmp_path):
    with pytest.raises(RuntimeError, match="sampler crashed"):
        evaluate(TASKS, BatchSampler(0), 2, tmp_path, PassAll(), batch_size=8, run_info={"temperature": -1})
    assert (tmp_path / RUN_FILE).exists() and (tmp_path / SAMPLES_FILE).read_text() == ""
    # another run_info, seed and batch size: the folder holds no samples, so run.json is replaced
    evaluate(TASKS, BatchSampler(), 2, tmp_path, PassAll(), seed=3, batch_size=4, run_info={"temperature": 0.5})
    run = json.loads((tmp_path / RUN_FILE).read_text())
    assert run["run_info"] == {"temperature": 0.5} and run["seed"] == 3 and run["batch_size"] == 4
    # with samples on file the refusal stands
    with pytest.raises(ValueError, match="different run_info"):
        evaluate(TASKS, BatchSampler(), 2, tmp_path, PassAll(), seed=3, batch_size=4, run_info={"temperature": 0.7})


def test_a_samples_file_holding_only_half_a_line_counts_as_empty(tmp_path):
    evaluate(TASKS[:1], BatchSampler(), 1, tmp_path, PassAll(), run_info={"a": 1})
    path = tmp_path / SAMPLES_FILE
    path.write_text(path.read_text()[:30])
    res = evaluate(TASKS[:1], BatchSampler(), 1, tmp_path, PassAll(), run_info={"a": 2})
    assert res["num_samples"] == 1 and len(path.read_text().splitlines()) == 1


def test_a_second_writer_is_refused_while_the_first_runs(tmp_path):
    entered, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def first():
        try:
            evaluate(TASKS, BatchSampler(gate=(entered, release)), 2, tmp_path, PassAll(), batch_size=8)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert entered.wait(30)
        owner = json.loads((tmp_path / LOCK_OWNER_FILE).read_text())
        assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname()
        start = time.monotonic()
        with pytest.raises(ValueError) as info:
            evaluate(TASKS, BatchSampler(), 2, tmp_path, PassAll(), batch_size=8)
        assert time.monotonic() - start < 5  # refused at once, not after a wait
        message = str(info.value)
        assert str(tmp_path) in message and f"pid {os.getpid()}" in message
        assert socket.gethostname() in message and owner["started"] in message
        assert "wait" in message and "--out" in message
    finally:
        release.set()
        thread.join(30)
    assert errors == []
    assert not (tmp_path / LOCK_OWNER_FILE).exists()
    assert len(records_by_key(tmp_path / SAMPLES_FILE)) == 20  # each sample once
    idle = BatchSampler()
    res = evaluate(TASKS, idle, 2, tmp_path, PassAll(), batch_size=8)  # the directory is free again
    assert idle.calls == [] and res["num_samples"] == 20


def test_a_stale_owner_file_does_not_block(tmp_path):
    write_json(tmp_path / LOCK_OWNER_FILE, {"pid": 1, "host": "gone", "started": "long ago"})
    res = evaluate(TASKS[:2], BatchSampler(), 1, tmp_path, PassAll())
    assert res["num_samples"] == 2 and not (tmp_path / LOCK_OWNER_FILE).exists()


def test_write_json_is_atomic(tmp_path):
    path = tmp_path / "results.json"
    write_json(path, {"a": 1})
    with pytest.raises(TypeError):
        write_json(path, {"a": object()})  # fails half way: the old file stays whole
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temp file left behind


def test_results_files_are_written_through_write_json(tmp_path, monkeypatch):
    import demask.evaluation.runner as runner

    written = []
    real = runner.write_json
    monkeypatch.setattr(runner, "write_json", lambda path, obj: (written.append(Path(path).name), real(path, obj)))
    evaluate(TASKS[:1], BatchSampler(), 1, tmp_path, PassAll())
    assert {"run.json", "results.json", LOCK_OWNER_FILE} <= set(written)


# ----------------------------------------------------------- a real SIGKILL of a real process
SCRIPT = """
import random, sys, time

from demask.evaluation import SampleOutput, evaluate
from demask.evaluation.sampler import _combined_seed
from demask.evaluation.samples import read_samples
from demask.execution.types import ExecutionResult, Verdict
from demask.tasks.base import Task

out_dir, pause = sys.argv[1], float(sys.argv[2])
TASKS = [Task(f"K/{k}", f"def f{k}(x):\\n", ("assert True",), f"f{k}") for k in range(30)]


class PassAll:
    def run_many(self, programs):
        for i, _ in enumerate(programs):
            yield i, ExecutionResult(Verdict.PASSED, 1, 1, [Verdict.PASSED])


def sampler(prompts, seeds):
    rng = random.Random(_combined_seed(list(seeds)))  # one stream for the batch
    time.sleep(pause)
    return [SampleOutput(f"    return {rng.getrandbits(40)}\\n", nfe=1, num_tokens=1) for _ in prompts]


evaluate(TASKS, sampler, 4, out_dir, PassAll(), seed=7, batch_size=8, ks=(1,), run_info={"temperature": 0.8})
"""


def _run_script(script: Path, out: Path, pause: float) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(script), str(out), str(pause)], env=env)


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


@pytest.mark.slow
def test_sigkill_then_rerun_equals_an_uninterrupted_run(tmp_path):
    script = tmp_path / "run_eval.py"
    script.write_text(textwrap.dedent(SCRIPT))
    assert _run_script(script, tmp_path / "full", 0.0).wait(60) == 0
    full = records_by_key(tmp_path / "full" / SAMPLES_FILE)
    assert len(full) == 120

    # kill after k batches are on file; optionally cut the file back into the middle of a batch
    # (as if the kill had landed while the batch's lines were being written)
    for batches, cut in [(1, None), (3, (21, True)), (6, (45, False))]:
        out = tmp_path / f"killed_after_{batches}"
        samples = out / SAMPLES_FILE
        proc = _run_script(script, out, 0.15)
        deadline = time.monotonic() + 60
        while _lines(samples) < 8 * batches:
            assert proc.poll() is None, "the run ended before the kill"
            assert time.monotonic() < deadline
            time.sleep(0.005)
        if batches == 1:  # meanwhile, a second writer is refused, naming the first
            with pytest.raises(ValueError, match=rf"pid {proc.pid} on {socket.gethostname()}"):
                evaluate([Task("x", "", (), "x")], BatchSampler(), 1, out, PassAll())
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
        assert 8 * batches <= _lines(samples) < 120
        if cut is not None:
            cut_samples(samples, *cut)
        assert _run_script(script, out, 0.0).wait(60) == 0
        assert records_by_key(samples) == full, f"killed after {batches} batches"
        assert json.loads((out / "results.json").read_text())["num_samples"] == 120


def test_a_run_json_from_before_batch_size_was_recorded_still_continues(tmp_path):
    evaluate(TASKS, BatchSampler(), 3, tmp_path / "full", PassAll(), batch_size=4, ks=(1,))
    part = tmp_path / "part"
    with pytest.raises(RuntimeError, match="sampler crashed"):
        evaluate(TASKS, BatchSampler(crash_after_calls=3), 3, part, PassAll(), batch_size=4, ks=(1,))
    run = json.loads((part / RUN_FILE).read_text())
    del run["batch_size"], run["sample_ranges"]  # as the previous version wrote it
    write_json(part / RUN_FILE, run)
    with pytest.raises(ValueError, match="batch size 4, now 8"):
        evaluate(TASKS, BatchSampler(), 3, part, PassAll(), batch_size=8, ks=(1,))
    evaluate(TASKS, BatchSampler(), 3, part, PassAll(), batch_size=4, ks=(1,))
    assert records_by_key(part / SAMPLES_FILE) == records_by_key(tmp_path / "full" / SAMPLES_FILE)
    assert json.loads((part / RUN_FILE).read_text())["sample_ranges"] == [[0, 3]]


def test_edited_sample_ranges_are_refused(tmp_path):
    evaluate(TASKS[:2], BatchSampler(), 2, tmp_path, PassAll())
    run = json.loads((tmp_path / RUN_FILE).read_text())
    write_json(tmp_path / RUN_FILE, {**run, "sample_ranges": [[0, 1], [2, 3]]})
    with pytest.raises(ValueError, match=r"run\.json: sample_ranges .* not a list of consecutive"):
        evaluate(TASKS[:2], BatchSampler(), 2, tmp_path, PassAll())


def test_what_a_finished_run_leaves(tmp_path):
    evaluate(TASKS[:2], BatchSampler(), 2, tmp_path, PassAll())
    names = {p.name for p in tmp_path.iterdir()}
    assert (
        {"samples.jsonl", "run.json", "results.json"} <= names <= {"samples.jsonl", "run.json", "results.json", ".lock"}
    )
