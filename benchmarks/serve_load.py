"""A bounded load test of `demask serve` on loopback: N concurrent clients, batched against
one-at-a-time serving, side by side in one run.

    python benchmarks/serve_load.py [--model tinycode-block] [--clients 8] [--requests 48] \
        [--max-tokens 48] [--out results/serve_load.json]

Two servers of the same model run in this process on loopback (uvicorn, the official
``openai`` client): one batching up to ``--max-batch`` completions (the default server), one
with ``--max-batch 1`` (a request at a time). For each: first ``--lone`` requests sent one
after another with nothing else in flight (a lone request's latency), then ``--requests``
requests spread over ``--clients`` threads, each sending its next request when the last one
returned. Prompts are TinyCode validation prompts, greedy, ``max_tokens`` tokens. Reported:
requests/s, p50/p95 latency, the lone latency, decodes run, and whether every request got
exactly one answer with the text it gets alone (nothing lost, duplicated or mixed up).
Goal (issue 16): batched >= 4x the one-at-a-time requests/s, p95 <= 2x the lone latency.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def start_server(llm, max_batch: int, wait_ms: float = 0.0):
    import openai
    import uvicorn

    from demask.serving.app import Limits, create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(llm, Limits(max_rows=max_batch, max_queued_rows=4096, batch_wait_ms=wait_ms))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="-", max_retries=0, timeout=600)
    return server, thread, client, app


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def run(args: argparse.Namespace) -> dict:
    import demask
    from demask.tasks import load_tasks

    llm = demask.load(args.model)
    prompts = [t.prompt for t in load_tasks("tinycode:validation")[: args.requests]]
    expected = {p: llm.generate(p, max_new_tokens=args.max_tokens) for p in prompts}  # alone, as the truth
    # the ceiling of any server on this machine: decoding `clients` prompts as one batch
    # against one at a time, without HTTP (fastest of 3)
    group = prompts[: args.clients]
    t_one = min(_timed(lambda: [llm.generate(p, max_new_tokens=args.max_tokens) for p in group]) for _ in range(3))
    t_batch = min(_timed(lambda: llm.generate(group, max_new_tokens=args.max_tokens)) for _ in range(3))
    ceiling = {"batch": len(group), "one_at_a_time_s": t_one, "batched_s": t_batch, "speedup": t_one / t_batch,
               "batch_over_lone_latency": t_batch / (t_one / len(group))}  # fmt: skip
    report: dict = {"model": args.model, "clients": args.clients, "requests": len(prompts),
                    "max_tokens": args.max_tokens, "servers": {}, "decode_ceiling": ceiling}  # fmt: skip
    for label, batch, wait in (("batched", args.max_batch, args.wait_ms), ("one-at-a-time", 1, 0.0)):
        server, thread, client, app = start_server(llm, batch, wait)

        def ask(prompt: str, client=client) -> tuple[str, float, str]:
            t0 = time.perf_counter()
            out = client.completions.create(model=args.model, prompt=prompt, max_tokens=args.max_tokens)
            return out.choices[0].text, time.perf_counter() - t0, out.id

        ask(prompts[0])  # warm-up
        lone = [ask(prompts[i % len(prompts)])[1] for i in range(args.lone)]
        before = app.state.batcher.batches
        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            answers = list(pool.map(ask, prompts))
        wall = time.perf_counter() - t0
        latencies = [a[1] for a in answers]
        ok = sum(a[0] == expected[p] for a, p in zip(answers, prompts))
        report["servers"][label] = {
            "max_batch": batch,
            "requests_per_s": len(prompts) / wall,
            "p50_s": statistics.median(latencies),
            "p95_s": percentile(latencies, 0.95),
            "lone_s": statistics.median(lone),
            "decodes": app.state.batcher.batches - before,
            "answered": len(answers),
            "unique_ids": len({a[2] for a in answers}),
            "same_text_as_alone": ok,
        }
        server.should_exit = True
        thread.join(60)
    b, s = report["servers"]["batched"], report["servers"]["one-at-a-time"]
    report["throughput_ratio"] = b["requests_per_s"] / s["requests_per_s"]
    report["p95_over_lone"] = b["p95_s"] / b["lone_s"]
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="tinycode-block")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=48)
    ap.add_argument("--lone", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--max-batch", type=int, default=32)
    ap.add_argument("--wait-ms", type=float, default=0.0, help="the batched server's --batch-wait-ms")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    report = run(args)
    for label, r in report["servers"].items():
        print(f"{label:>14}: {r['requests_per_s']:6.2f} req/s  p50 {r['p50_s'] * 1e3:6.0f} ms  p95 "
              f"{r['p95_s'] * 1e3:6.0f} ms  lone {r['lone_s'] * 1e3:5.0f} ms  {r['decodes']} decodes  "
              f"{r['answered']} answered, {r['unique_ids']} ids, {r['same_text_as_alone']} as alone")  # fmt: skip
    c = report["decode_ceiling"]
    print(f"ceiling without HTTP: {c['batch']} prompts as one batch {c['speedup']:.2f}x the throughput of one at a "
          f"time; the batch takes {c['batch_over_lone_latency']:.2f}x a lone decode")  # fmt: skip
    print(f"batched / one-at-a-time requests/s: {report['throughput_ratio']:.2f}x (goal >= 4x); "
          f"batched p95 / lone latency: {report['p95_over_lone']:.2f}x (goal <= 2x)")  # fmt: skip
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
