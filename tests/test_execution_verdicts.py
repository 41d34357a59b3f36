"""The sandbox end to end: verdicts, per-test pass rates, run_many, isolation report."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from demask.execution import ExecutionResult, Program, Sandbox, SandboxConfig, Verdict, run_programs

P, F, E, T, M, K = (Verdict.PASSED, Verdict.FAILED, Verdict.ERROR, Verdict.TIMEOUT, Verdict.MEMORY, Verdict.KILLED)
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")


@pytest.fixture(scope="module")
def sb():
    with Sandbox(SandboxConfig(workers=2, timeout_s=1.0)) as box:
        yield box


def test_passed_without_and_with_tests(sb):
    r = sb.run("x = 2 + 2")
    assert r.verdict is P and r.passed and r.pass_rate == 1.0 and r.tests_total == 0
    r = sb.run(Program("def f(x):\n    return 2 * x", tests=("assert f(2) == 4", "assert f(0) == 0")))
    assert r.verdict is P and r.per_test == [P, P] and (r.tests_passed, r.tests_total) == (2, 2)
    assert r.error is None and r.isolation == sb.isolation


@pytest.mark.parametrize(
    "code, verdict, error",
    [
        ("assert 1 == 2, 'one is not two'", F, "AssertionError: one is not two"),
        ("raise ValueError('boom')", E, "ValueError: boom"),
        ("def f(:\n    pass", E, "SyntaxError"),
        ("undefined_name", E, "NameError: name 'undefined_name' is not defined"),
        ("while True:\n    pass", T, "wall-clock limit of 1 s exceeded"),
        ("x = bytearray(2 ** 40)", M, "MemoryError"),
        ("import ctypes\nctypes.string_at(0)", K, "killed by signal SIGSEGV"),
        ("import os\nos._exit(3)", K, "exited with status 3"),
    ],
)
def test_verdicts(sb, code, verdict, error):
    r = sb.run(code)
    assert r.verdict is verdict, (r.error, r.stderr)
    assert error in r.error
    assert not r.passed and r.pass_rate == 0.0


def test_error_message_of_hostile_exception_str(sb):
    code = "class Bad(Exception):\n    def __str__(self):\n        raise RuntimeError('no')\nraise Bad()"
    r = sb.run(code)
    assert r.verdict is E and r.error == "Exception: <unprintable>"


def test_per_test_pass_rate_with_restarts(sb):
    tests = (
        "assert f(1) == 2",  # passed
        "assert f(2) == 5",  # failed
        "raise ValueError('boom')",  # error
        "while True:\n    pass",  # timeout: the child is killed, a fresh one goes on
        "assert f(3) == 6",  # passed
        "import os\nos._exit(0)",  # killed (exited early): restart again
        "assert f(0) == 0",
    )  # passed
    r = sb.run(Program("def f(x):\n    return 2 * x\nprint('code ran')", tests=tests))
    assert r.per_test == [P, F, E, T, P, K, P]
    assert (r.tests_passed, r.tests_total) == (3, 7)
    assert r.pass_rate == pytest.approx(3 / 7)
    assert r.verdict is F and r.error == "test 2: AssertionError"
    assert r.stdout.count("code ran") == 3  # code re-ran in each of the two restarts


def test_restarts_are_bounded(sb):
    hang = "while True:\n    pass"
    r = sb.run(Program("x = 1", tests=(hang, hang, hang, hang, "assert x == 1"), timeout_s=0.4))
    # max_restarts=2: three runs, each lost to one hanging test; the rest are not run.
    assert r.per_test == [T, T, T, T, T]
    assert r.error == "test 1: wall-clock limit of 0.4 s exceeded"


def test_code_failure_gives_every_test_its_verdict(sb):
    r = sb.run(Program("raise KeyError('k')", tests=("assert True", "assert True", "assert True")))
    assert r.per_test == [E, E, E] and r.tests_passed == 0 and r.error == "KeyError: 'k'"


def test_syntax_error_in_one_test_only(sb):
    r = sb.run(Program("x = 1", tests=("assert x == 1", "assert x ==", "assert x + 1 == 2")))
    assert r.per_test == [P, E, P] and "SyntaxError" in r.error


def test_tests_share_the_code_namespace(sb):
    r = sb.run(Program("acc = []", tests=("acc.append(1)", "acc.append(2)", "assert acc == [1, 2]")))
    assert r.per_test == [P, P, P]


def test_program_timeout_override(sb):
    r = sb.run(Program("while True:\n    pass", timeout_s=0.3))
    assert r.verdict is T and "0.3 s" in r.error
    with pytest.raises(ValueError, match="timeout_s"):
        sb.run(Program("x = 1", timeout_s=-1))


def test_stdout_and_stderr_are_captured_apart(sb):
    r = sb.run("import sys\nprint('hello')\nprint('oops', file=sys.stderr)")
    assert r.stdout == "hello\n" and r.stderr == "oops\n"


def test_output_is_capped_without_hanging(sb):
    r = sb.run("import sys\nsys.stdout.write('x' * 10_000_000)\nsys.stdout.flush()")
    assert r.verdict is P
    cap = sb.config.max_output_bytes
    assert r.stdout == "x" * cap + f"\n[demask sandbox: {10_000_000 - cap} more bytes dropped]"


def test_run_many_yields_every_program_once(sb):
    programs = [Program(f"v = {i}\nprint(v)", tests=(f"assert v == {i}",)) for i in range(200)]
    seen = {}
    for index, result in sb.run_many(iter(programs)):  # a lazy iterator is fine
        assert index not in seen
        seen[index] = result
    assert sorted(seen) == list(range(200))
    assert all(seen[i].passed and seen[i].stdout == f"{i}\n" for i in range(200))


def test_run_many_completes_out_of_order(sb):
    programs = ["import time\ntime.sleep(0.5)", "x = 1", "x = 2", "x = 3"]
    order = [i for i, _ in sb.run_many(programs)]
    assert sorted(order) == [0, 1, 2, 3] and order.index(1) < order.index(0)


def test_map_keeps_input_order_and_accepts_strings(sb):
    results = sb.map(["print(1)", Program("print(2)"), "print(3)"])
    assert [r.stdout for r in results] == ["1\n", "2\n", "3\n"]
    with pytest.raises(TypeError, match="Program or a str"):
        sb.map([42])


def test_run_many_closed_early_then_pool_still_works(sb):
    it = sb.run_many(["x = 1"] * 10)
    next(it)
    it.close()
    assert sb.run("x = 1").passed


def test_nested_run_in_same_thread_is_refused(sb):
    it = sb.run_many(["x = 1", "x = 2", "x = 3"])
    next(it)
    with pytest.raises(RuntimeError, match="already inside a run_many"):
        sb.run("x = 1")
    list(it)


def test_worker_killed_from_outside_is_replaced(sb):
    victim = sb.worker_pids[0]
    # Two programs per worker: the victim's second one, queued behind the one it is running
    # when it dies, must go to a worker and pass.
    programs = ["import time\ntime.sleep(0.6)\nprint('slept')"] * 4
    it = sb.run_many(programs)
    time.sleep(0.3)
    os.kill(victim, signal.SIGKILL)
    results = dict(it)
    assert sorted(results) == [0, 1, 2, 3]
    killed = [r for r in results.values() if r.verdict is K]
    assert len(killed) == 1 and "worker 0 died" in killed[0].error
    assert sum(r.passed and r.stdout == "slept\n" for r in results.values()) == 3
    assert victim not in sb.worker_pids and len(sb.worker_pids) == 2
    assert all(r.passed for r in sb.map(["x = 1"] * 4))


def test_cpu_time_limit_catches_c_level_loop():
    # A long wall clock, so that only RLIMIT_CPU can stop sum(range(...)) (a C loop).
    with Sandbox(SandboxConfig(workers=1, timeout_s=20.0, cpu_s=1)) as box:
        r = box.run("sum(range(10 ** 12))")
    assert r.verdict is T and "CPU time limit of 1 s" in r.error


def test_run_programs_helper():
    results = run_programs(["x = 1", "assert False"], SandboxConfig(workers=1, timeout_s=1.0))
    assert [r.verdict for r in results] == [P, F]
    assert all(isinstance(r, ExecutionResult) for r in results)


# ---------------------------------------------------------------------- isolation report
def test_isolation_report_as_root(sb):
    if os.geteuid() != 0:
        pytest.skip("reports 'full isolation [root]' only when run as root")
    assert sb.isolation.startswith("full isolation [root]")
    plan = sb.isolation_plan
    assert all(plan[k] for k in ("pid_ns", "net_ns", "mount_ns", "ipc_ns", "uid_drop"))
    assert len(sb.uids) == 2 and all(u >= 1000 for u in sb.uids)
    assert int(sb.run("import os\nprint(os.getuid())").stdout) in sb.uids


def test_isolation_report_says_when_network_is_left_on():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    try:
        with Sandbox(SandboxConfig(workers=1, timeout_s=2.0, isolate_network=False)) as box:
            assert box.isolation.startswith("WEAKER") and "network reachable" in box.isolation
            assert "isolate_network=False" in box.isolation
            r = box.run(
                f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)\nprint('connected')"
            )
            assert r.stdout == "connected\n" and r.isolation == box.isolation
        with pytest.raises(RuntimeError, match="full isolation unavailable"):
            Sandbox(SandboxConfig(workers=1, isolate_network=False, require_full_isolation=True)).start()
    finally:
        listener.close()


def _as_nobody(script: str) -> subprocess.CompletedProcess:
    repo = Path(__file__).resolve().parents[1]
    return subprocess.run(
        ["/usr/bin/python3", "-c", script],
        cwd=repo,
        user=65534,
        group=65534,
        extra_groups=[],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin"},
    )


def _world_readable(path: Path) -> bool:
    return all(p.stat().st_mode & 0o005 == 0o005 for p in [path, *path.parents])


@pytest.mark.skipif(
    os.geteuid() != 0
    or not os.access("/usr/bin/python3", os.X_OK)
    or not _world_readable(Path(__file__).resolve().parents[1] / "demask"),
    reason="needs root (to switch to uid 65534), a system /usr/bin/python3 and a checkout that uid 65534 can read",
)
@pytest.mark.parametrize(
    "flags, expect",
    [
        ("", ("[userns]", "[none]")),  # user namespaces if the kernel allows them
        ("isolate_network=False, isolate_filesystem=False, isolate_processes=False", ("WEAKER isolation [none]",)),
    ],
)
def test_isolation_report_when_not_root(flags, expect):
    script = (
        "from demask.execution import Sandbox, SandboxConfig\n"
        f"with Sandbox(SandboxConfig(workers=1, timeout_s=2.0, {flags})) as sb:\n"
        "    print(sb.isolation)\n"
        "    r = sb.run('import os\\nif os.fork() == 0:\\n    os.setsid()\\n    import time\\n    time.sleep(60)\\n')\n"
        "    print(r.verdict.value)\n"
        "    print(sb.run('while True: pass').verdict.value)\n"
    )
    out = _as_nobody(script)
    assert out.returncode == 0, out.stderr
    isolation, first, second = out.stdout.strip().splitlines()
    assert any(e in isolation for e in expect), isolation
    if "[none]" in isolation:
        assert "WEAKER" in isolation and "MISSING" in isolation and "network reachable" in isolation
    assert (first, second) == ("passed", "timeout")
    # the escaped, setsid'd sleeper of the first program is gone (uid 65534 runs nothing now)
    assert _processes_of_uid(65534) == []


def _processes_of_uid(uid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/status") as f:
                    uids = next(line for line in f if line.startswith("Uid:")).split()[1:]
            except (OSError, StopIteration):
                continue
            if int(uids[0]) == uid:
                found.append(int(entry))
    return found
