import json

import pytest

from demask.tasks import registry
from demask.tasks.base import Task
from demask.tasks.registry import Benchmark, benchmark_names, get_benchmark, load_tasks, parse_spec


def test_builtin_benchmarks_are_lazy_entries():
    import subprocess
    import sys

    code = (
        "import sys; import demask.tasks.registry as r; "
        "assert 'demask.tasks.mbpp' not in sys.modules; r.get_benchmark('mbpp'); "
        "assert 'demask.tasks.mbpp' in sys.modules; print(r.benchmark_names())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "tinycode" in out


def test_builtin_benchmarks_are_registered():
    names = benchmark_names()
    for name in ("humaneval", "humaneval-asserts", "mbpp", "mbpp-sanitized"):
        assert name in names
        assert get_benchmark(name).version


def test_unknown_name_suggests_close_names():
    with pytest.raises(ValueError, match=r"unknown benchmark 'humaneva'; did you mean 'humaneval'"):
        load_tasks("humaneva")
    with pytest.raises(ValueError, match=r"did you mean 'mbpp'"):
        load_tasks("mpbp:test")


def test_unknown_name_without_close_match_lists_known():
    with pytest.raises(ValueError, match=r"known: .*humaneval.*; or give the path of a HumanEval-shape") as info:
        load_tasks("zzzzzz")
    assert "did you mean" not in str(info.value)


def test_unknown_split_names_the_choices():
    with pytest.raises(ValueError, match=r"no split 'tset'; choose one of test, validation, train"):
        load_tasks("mbpp:tset")


def test_parse_spec():
    assert parse_spec("mbpp:test") == ("mbpp", "test")
    assert parse_spec("humaneval") == ("humaneval", None)
    with pytest.raises(ValueError, match="ends with ':'"):
        parse_spec("mbpp:")


def test_register_and_load_a_custom_benchmark(monkeypatch):
    monkeypatch.setattr(registry, "BENCHMARKS", registry.new_registry())
    calls = []

    def loader(split, **kw):
        calls.append((split, kw))
        return [Task("toy/0", "def f():\n", ("assert f() == 1",), "f")]

    bench = Benchmark("toy", "3", loader, splits=("a", "b"), default_split="a")
    registry.register_benchmark(bench)
    assert load_tasks("toy")[0].task_id == "toy/0"
    load_tasks("toy:b", level=2)
    assert calls == [("a", {}), ("b", {"level": 2})]
    with pytest.raises(ValueError, match="already registered"):
        registry.register_benchmark(Benchmark("toy", "4", loader))
    registry.register_benchmark(Benchmark("toy", "4", loader), replace=True)
    assert get_benchmark("toy").version == "4"


def test_a_benchmark_without_splits_rejects_one(monkeypatch):
    monkeypatch.setattr(registry, "BENCHMARKS", registry.new_registry())
    registry.register_benchmark(Benchmark("nosplit", "1", lambda split: []))
    with pytest.raises(ValueError, match="has no splits"):
        load_tasks("nosplit:x")


def test_bad_benchmark_definitions():
    with pytest.raises(ValueError, match="must be non-empty and contain no ':'"):
        Benchmark("a:b", "1", lambda s: [])
    with pytest.raises(ValueError, match="default_split 'x' is not one of its splits"):
        Benchmark("a", "1", lambda s: [], splits=("y",), default_split="x")


def test_paths_go_to_the_jsonl_reader(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(
        json.dumps(
            {
                "task_id": "x/0",
                "prompt": "def f():\n",
                "test": "def check(c):\n    assert c() == 1\n",
                "entry_point": "f",
            }
        )
        + "\n"
    )
    tasks = load_tasks(str(path))
    assert [t.task_id for t in tasks] == ["x/0"]
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        load_tasks(str(tmp_path / "nope.jsonl"))
