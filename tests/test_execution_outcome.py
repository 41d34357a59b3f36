"""Pure parts of the sandbox: the config, the result channel, and the verdict bookkeeping."""

import os

import pytest

from demask.execution import SandboxConfig
from demask.execution.channel import RecordReader, encode, parse_part, part_payload
from demask.execution.isolation import IsolationPlan
from demask.execution.outcome import Attempt, ProgramOutcome

P, F, E, T, M, K = "passed", "failed", "error", "timeout", "memory", "killed"


# ---------------------------------------------------------------------- config
@pytest.mark.parametrize(
    "field, value, words",
    [
        ("workers", 0, "workers=0"),
        ("timeout_s", 0, "timeout_s=0"),
        ("timeout_s", float("nan"), "timeout_s=nan"),
        ("memory_mb", 64, "memory_mb=64"),
        ("cpu_s", 0, "cpu_s=0"),
        ("max_processes", 0, "max_processes=0"),
        ("max_restarts", -1, "max_restarts=-1"),
        ("uid_base", 0, "uid_base=0"),
        ("preload", ("os; import x",), "preload"),
    ],
)
def test_config_rejects_bad_values_naming_them(field, value, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(")):
        SandboxConfig(**{field: value})


def test_config_defaults_and_cpu_limit():
    c = SandboxConfig()
    assert c.workers == (os.cpu_count() or 1)
    assert c.timeout_s == 3.0 and c.memory_mb == 1024
    assert c.cpu_limit(3.0) == 4 and c.cpu_limit(0.5) == 2 and c.cpu_limit(2.01) == 4
    assert SandboxConfig(cpu_s=7).cpu_limit(1.0) == 7
    assert c.uid_base >= 200_000 and c.uid_base + 1024 < 2**31


# ---------------------------------------------------------------------- channel
def test_channel_round_trip_and_sequence():
    key = b"k" * 32
    stream = encode(key, 0, part_payload(0, P)) + encode(key, 1, part_payload(1, F, "AssertionError: x"))
    reader = RecordReader(key)
    got = reader.feed(stream[:7]) + reader.feed(stream[7:])  # split mid-frame
    assert [parse_part(p) for p in got] == [(0, P, ""), (1, F, "AssertionError: x")]
    assert not reader.tampered


@pytest.mark.parametrize("forge", ["wrong_key", "replay", "reorder", "garbage", "oversize", "truncated"])
def test_channel_rejects_forgery(forge):
    key = b"k" * 32
    good0, good1 = encode(key, 0, part_payload(0, P)), encode(key, 1, part_payload(1, P))
    stream = {
        "wrong_key": encode(b"x" * 32, 0, part_payload(0, P)),
        "replay": good0 + good0,  # the second copy carries seq 0 where 1 is due
        "reorder": good1 + good0,
        "garbage": b"passed\n" * 10,
        "oversize": (1 << 30).to_bytes(4, "big") + b"x" * 40,
        "truncated": good0[:-1],
    }[forge]
    reader = RecordReader(key)
    accepted = reader.feed(stream)
    reader.close()
    assert reader.tampered
    assert len(accepted) <= 1  # at most the one genuine record before the forged one
    assert reader.feed(good1) == []  # nothing after tampering is trusted


# ---------------------------------------------------------------------- outcome
def _att(first, records, done=False, stop=None):
    return Attempt(first_test=first, records=dict(records), done=done, stop=stop)


def test_outcome_all_pass():
    o = ProgramOutcome(2, max_restarts=2)
    assert o.add(_att(0, {0: (P, ""), 1: (P, ""), 2: (P, "")}, done=True)) is None
    r = o.finish()
    assert r == dict(verdict=P, per_test=[P, P], tests_passed=2, tests_total=2, error=None)


def test_outcome_code_failure_decides_every_test():
    o = ProgramOutcome(3, max_restarts=2)
    assert o.add(_att(0, {0: (E, "KeyError: 'k'")}, done=True)) is None
    assert o.finish() == dict(verdict=E, per_test=[E, E, E], tests_passed=0, tests_total=3, error="KeyError: 'k'")


def test_outcome_restarts_after_a_hung_test_and_continues():
    o = ProgramOutcome(4, max_restarts=2)
    # test 2 (index 1) hangs: restart from index 2
    nxt = o.add(_att(0, {0: (P, ""), 1: (P, "")}, stop=(T, "wall")))
    assert nxt == 2
    assert o.add(_att(2, {0: (P, ""), 3: (F, "AssertionError"), 4: (P, "")}, done=True)) is None
    r = o.finish()
    assert r["per_test"] == [P, T, F, P]
    assert r["tests_passed"] == 2 and r["verdict"] == T and r["error"] == "test 2: wall"
    assert o.attempts == 2


def test_outcome_restarts_are_bounded():
    o = ProgramOutcome(5, max_restarts=1)
    assert o.add(_att(0, {0: (P, "")}, stop=(T, "wall"))) == 1
    assert o.add(_att(1, {0: (P, "")}, stop=(K, "signal"))) is None  # restarts used up
    r = o.finish()
    assert r["per_test"] == [T, K, K, K, K]
    assert r["tests_passed"] == 0


def test_outcome_code_dies_on_restart():
    o = ProgramOutcome(3, max_restarts=3)
    assert o.add(_att(0, {0: (P, ""), 1: (P, "")}, stop=(M, "mem"))) == 2
    assert o.add(_att(2, {}, stop=(T, "wall"))) is None  # code itself timed out this time
    assert o.finish()["per_test"] == [P, M, T]


def test_outcome_no_tests_and_early_exit():
    o = ProgramOutcome(0, max_restarts=2)
    assert o.add(_att(0, {}, stop=(K, "exited with status 0"))) is None
    assert o.finish() == dict(verdict=K, per_test=[], tests_passed=0, tests_total=0, error="exited with status 0")


def test_outcome_everything_reported_then_died_stands():
    o = ProgramOutcome(1, max_restarts=0)
    assert o.add(_att(0, {0: (P, ""), 1: (P, "")}, stop=(K, "signal"))) is None
    assert o.finish()["verdict"] == P


def test_isolation_plan_describes_what_is_missing():
    full = IsolationPlan(mode="root", pid_ns=True, net_ns=True, mount_ns=True, ipc_ns=True, uid_drop=True)
    assert full.full and full.describe().startswith("full isolation [root]")
    assert "MISSING" not in full.describe()
    weak = IsolationPlan(mode="none", notes=("not root and no user namespace: EPERM",))
    text = weak.describe()
    assert not weak.full and text.startswith("WEAKER isolation [none]")
    for words in ("network reachable", "no pid namespace", "file system writable", "owner's uid", "EPERM"):
        assert words in text
