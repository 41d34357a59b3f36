import hashlib
import json
from pathlib import Path

import pytest
from test_evaluation_fake import best_sandbox

from demask.evaluation.runner import run_programs
from demask.tasks import load_tasks, mbpp, read_tasks_jsonl, write_tasks_jsonl
from demask.tasks.mbpp import MBPP_SHA256, SANITIZED_SHA256, download, load_mbpp, verify_sha256

DATA = Path("/work/shared/data/mbpp")
MBPP_FILE = DATA / "mbpp.jsonl"
SANITIZED_FILE = DATA / "sanitized-mbpp.json"

pytestmark = pytest.mark.skipif(not MBPP_FILE.is_file(), reason=f"no MBPP copy at {MBPP_FILE}")

# Reference solutions of the test split that cannot pass in our sandbox, with the reason.
# None at present: all 500 pass (and all 974 of mbpp:all, all 427 of the sanitized file).
KNOWN_FAILING_REFERENCES: dict[str, str] = {}

# References that pass but need more than the usual 3 s time limit on a slow or busy machine.
SLOW_REFERENCES = {
    # amicable_numbers_sum(9999) tries every divisor of every number: ~10^8 modulo operations,
    # about 2 s on an idle core, 7 s measured here on two cores shared by several test runs.
    "Mbpp/123": 120.0,
}


@pytest.mark.parametrize(
    "split, size, first, last",
    [
        ("test", 500, 11, 510),
        ("validation", 90, 511, 600),
        ("train", 374, 601, 974),
        ("prompt", 10, 1, 10),
        ("all", 974, 1, 974),
    ],
)
def test_splits_by_task_id(split, size, first, last):
    tasks = load_tasks(f"mbpp:{split}", path=MBPP_FILE)
    assert len(tasks) == size
    assert tasks[0].task_id == f"Mbpp/{first}" and tasks[-1].task_id == f"Mbpp/{last}"


def test_default_split_is_test():
    assert [t.task_id for t in load_tasks("mbpp", path=MBPP_FILE)] == [f"Mbpp/{i}" for i in range(11, 511)]


def test_task_shape_and_prompt_format():
    task = {t.task_id: t for t in load_tasks("mbpp:prompt", path=MBPP_FILE)}["Mbpp/2"]
    assert task.prompt == (
        '"""\nWrite a function to find the similar elements from the given two tuple lists.\n'
        'assert similar_elements((3, 4, 5, 6),(5, 7, 4, 10)) == (4, 5)\n"""\n'
    )
    assert task.tests == (
        "assert similar_elements((3, 4, 5, 6),(5, 7, 4, 10)) == (4, 5)",
        "assert similar_elements((1, 2, 3, 4),(5, 4, 3, 7)) == (3, 4)",
        "assert similar_elements((11, 12, 14, 13),(17, 15, 14, 13)) == (13, 14)",
    )
    assert task.entry_point == "similar_elements"
    assert not task.prefix_prompt and task.setup == ""
    assert "\r" not in task.canonical_solution
    program = task.program("def similar_elements(a, b):\n    return 1\n")
    assert program.code == "def similar_elements(a, b):\n    return 1\n"  # whole program, no prompt


def test_setup_code_goes_in_front_of_each_test():
    # Task 367's test_setup_code builds trees from the Node class the solution defines.
    task = {t.task_id: t for t in load_tasks("mbpp:test", path=MBPP_FILE)}["Mbpp/367"]
    assert len(task.tests) == 3
    assert all(t.startswith("root = Node(1)") for t in task.tests)
    assert task.tests[0].endswith("assert is_tree_balanced(root) == False")


def test_entry_point_prefers_the_solutions_function():
    tasks = load_tasks("mbpp-sanitized:prompt", path=SANITIZED_FILE)
    task = {t.task_id: t for t in tasks}["Mbpp/2"]
    # the first call in the test is set(...); the function under test is similar_elements
    assert task.entry_point == "similar_elements"
    assert all(t.entry_point for t in load_tasks("mbpp:all", path=MBPP_FILE))


def test_sanitized_splits_and_imports():
    assert len(load_tasks("mbpp-sanitized:test", path=SANITIZED_FILE)) == 257
    assert len(load_tasks("mbpp-sanitized:all", path=SANITIZED_FILE)) == 427
    with_imports = [t for t in load_tasks("mbpp-sanitized:all", path=SANITIZED_FILE) if t.tests[0].startswith("import")]
    assert with_imports and all(all(x.startswith("import") for x in t.tests) for t in with_imports)


def test_include_challenge_tests():
    plain = {t.task_id: t for t in load_mbpp("all", path=MBPP_FILE)}
    more = {t.task_id: t for t in load_mbpp("all", path=MBPP_FILE, include_challenge=True)}
    grown = [tid for tid in plain if len(more[tid].tests) > len(plain[tid].tests)]
    assert len(grown) == 11  # the README: 11 records have challenge tests


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "none.jsonl")):
        load_tasks("mbpp:test", path=tmp_path / "none.jsonl")


def test_bad_line_names_the_line_number(tmp_path):
    lines = MBPP_FILE.read_text().splitlines()[:20]
    lines[14] = lines[14][:40]
    bad = tmp_path / "mbpp.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"mbpp\.jsonl, line 15: not valid JSON"):
        load_tasks("mbpp:test", path=bad)


def test_shipped_copy_has_the_expected_hashes():
    verify_sha256(MBPP_FILE, MBPP_SHA256)
    verify_sha256(SANITIZED_FILE, SANITIZED_SHA256)


def test_wrong_hash_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"sha256 of .*mbpp\.jsonl is ccf64cea.*expected 0000"):
        verify_sha256(MBPP_FILE, "0" * 64)


def test_download_checks_the_hash(tmp_path):
    dest = tmp_path / "cache" / "mbpp.jsonl"
    with pytest.raises(ValueError, match="nothing was saved"):
        download(MBPP_FILE.as_uri(), dest, "f" * 64)
    assert not dest.exists() and list(dest.parent.iterdir()) == []  # no partial file left
    download(MBPP_FILE.as_uri(), dest, MBPP_SHA256)
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == MBPP_SHA256


def test_download_failure_names_the_url(tmp_path):
    url = (tmp_path / "absent.jsonl").as_uri()
    with pytest.raises(OSError, match="could not download .*absent.jsonl"):
        download(url, tmp_path / "d.jsonl", MBPP_SHA256)


def test_cache_is_used_and_checked(tmp_path, monkeypatch):
    monkeypatch.setenv("DEMASK_CACHE", str(tmp_path))
    fetched = []

    def fake_download(url, dest, sha256, **kw):
        fetched.append(url)
        Path(dest).parent.mkdir(parents=True, exist_ok=True)
        Path(dest).write_bytes(MBPP_FILE.read_bytes())
        return Path(dest)

    monkeypatch.setattr(mbpp, "download", fake_download)
    with pytest.raises(FileNotFoundError, match="download=False"):
        load_mbpp("test", download=False)
    assert len(load_mbpp("test")) == 500 and fetched == [mbpp.MBPP_URL]
    assert len(load_mbpp("test")) == 500 and len(fetched) == 1  # second time from the cache
    cached = tmp_path / "mbpp" / "mbpp.jsonl"
    cached.write_text(cached.read_text()[:-10])
    with pytest.raises(ValueError, match="corrupt or a different revision"):
        load_mbpp("test")


def test_export_to_humaneval_shape_round_trips(tmp_path):
    tasks = load_tasks("mbpp:prompt", path=MBPP_FILE)
    again = read_tasks_jsonl(write_tasks_jsonl(tmp_path / "mbpp_prompt.jsonl", tasks))
    assert again == tasks
    rec = json.loads((tmp_path / "mbpp_prompt.jsonl").read_text().splitlines()[0])
    program = rec["prompt"] + tasks[0].canonical_solution + "\n" + rec["test"] + "\n" + f"check({rec['entry_point']})"
    exec(program, {})


@pytest.mark.slow
def test_every_test_split_reference_solution_passes():
    tasks = load_tasks("mbpp:test", path=MBPP_FILE)
    with best_sandbox(workers=2, timeout_s=10.0) as sb:
        results = run_programs(sb, [t.reference_program(SLOW_REFERENCES.get(t.task_id)) for t in tasks])
    failing = {
        t.task_id: f"{r.verdict.value}: {r.error}"
        for t, r in zip(tasks, results)
        if not r.passed and t.task_id not in KNOWN_FAILING_REFERENCES
    }
    assert failing == {}
    assert all(r.tests_total == 3 for r in results)
