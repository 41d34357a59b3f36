"""Seeds, the samples file reader/appender, and generation overlapping execution."""

import json
import threading

import pytest
from test_evaluation_fake import FakeSandbox

from demask.evaluation import SampleOutput, evaluate, sample_seed
from demask.evaluation.results import summarize
from demask.evaluation.samples import open_for_append, read_samples, write_record
from demask.tasks.base import Task


def test_sample_seed_is_pinned_and_distinct():
    # Pinned: changing the derivation would make old runs resume with other samples.
    assert sample_seed(0, "T/0", 0) == 8557009478429323600
    seeds = {sample_seed(b, t, i) for b in (0, 1) for t in ("T/0", "T/1", "T/01") for i in range(50)}
    assert len(seeds) == 2 * 3 * 50
    assert all(0 <= s < 2**63 for s in seeds)


def test_read_samples_variants(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_bytes(b'{"a": 1}\n\n{"a": 2}\n{"a": 3')  # a crash mid-line
    read = read_samples(path)
    assert [(n, r["a"]) for n, r in read.records] == [(1, 1), (3, 2)]
    assert read.dropped_partial_line and read.good_bytes == len(b'{"a": 1}\n\n{"a": 2}\n')

    path.write_bytes(b'{"a": 1}\n{"a": 2}')  # complete record, newline lost: kept
    read = read_samples(path)
    assert [r["a"] for _, r in read.records] == [1, 2] and not read.dropped_partial_line
    with open_for_append(path, read.good_bytes) as f:
        write_record(f, {"a": 3})
    assert path.read_bytes() == b'{"a": 1}\n{"a": 2}\n{"a": 3}\n'

    path.write_bytes(b'{"a": 1}\n{"a": \n{"a": 3}\n')
    with pytest.raises(ValueError, match="line 2: not a JSON object"):
        read_samples(path)
    path.write_bytes(b'{"a": 1}\n[1]\n')
    with pytest.raises(ValueError, match="line 2: not a JSON object"):
        read_samples(path)


def test_open_for_append_cuts_a_partial_line(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_bytes(b'{"a": 1}\n{"a": ')
    read = read_samples(path)
    with open_for_append(path, read.good_bytes) as f:
        write_record(f, {"a": 2})
    assert [json.loads(line) for line in path.read_text().splitlines()] == [{"a": 1}, {"a": 2}]


def test_summarize_rejects_foreign_tasks():
    task = Task("A", "def f():\n", ("assert f()",), "f")
    rec = {"task_id": "B", "sample_index": 0, "passed": True, "verdict": "passed", "pass_rate": 1.0}
    with pytest.raises(ValueError, match="names task 'B', which is not among the 1 tasks"):
        summarize([task], [rec])


class GatedSandbox(FakeSandbox):
    """Holds the first batch's execution until the sampler is generating the second batch."""

    def __init__(self, second_batch_started: threading.Event):
        super().__init__(workers=1)
        self.second_batch_started = second_batch_started
        self.overlapped: list[bool] = []

    def run_many(self, programs):
        if not self.overlapped:
            self.overlapped.append(self.second_batch_started.wait(timeout=10.0))
        else:
            self.overlapped.append(True)
        yield from super().run_many(programs)


def test_generation_overlaps_execution(tmp_path):
    started = threading.Event()
    calls = []

    def sampler(prompts, seeds):
        calls.append(len(prompts))
        if len(calls) == 2:
            started.set()
        return [SampleOutput("    return 1\n") for _ in prompts]

    sandbox = GatedSandbox(started)
    task = Task("A", "def f():\n", ("assert f() == 1",), "f")
    res = evaluate([task], sampler, 4, tmp_path, sandbox, batch_size=2)
    assert calls == [2, 2]
    assert sandbox.overlapped[0] is True  # batch 1 was executing while batch 2 was generated
    assert res["tasks"]["A"]["c"] == 4
