"""A sandbox worker: a long-lived process that forks one isolated child per program run.

Started by ``Sandbox`` as a fresh interpreter (stdlib only; this package is loaded under
a private name, so nothing else of demask is imported). Start-up: find the isolation
this machine allows (isolation.py), import the preload modules, freeze the GC, say
hello. Then, per request: for each attempt of the program, draw a key, fork a child (PID
1 of a new PID namespace where allowed), enforce the wall clock from here, collect
stdout/stderr up to a cap and the authenticated records, kill whatever is left, and
answer with one result message.
"""

from __future__ import annotations

import gc
import importlib
import os
import random
import select
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import replace

from . import channel, harness, isolation, wire
from .isolation import CLONE_NEWPID, ChildLimits, IsolationPlan
from .outcome import Attempt, ProgramOutcome
from .types import Verdict

TIMEOUT, KILLED = Verdict.TIMEOUT.value, Verdict.KILLED.value
_READ = 1 << 16


class Capture:
    """Keeps the first ``limit`` bytes of a stream and counts the rest."""

    def __init__(self, limit: int) -> None:
        self.limit, self.data, self.dropped = limit, bytearray(), 0

    def add(self, chunk: bytes) -> None:
        room = self.limit - len(self.data)
        if room > 0:
            self.data += chunk[:room]
        self.dropped += max(0, len(chunk) - max(room, 0))

    def text(self) -> str:
        out = self.data.decode("utf-8", "replace")
        if self.dropped:
            out += f"\n[demask sandbox: {self.dropped} more bytes dropped]"
        return out


class Worker:
    def __init__(self, config: dict, slot: int) -> None:
        self.config = config
        self.slot = slot
        self.devnull = os.open(os.devnull, os.O_RDWR)
        self.pidns_fd = -1
        self.plan = IsolationPlan()
        self.tmp_root = tempfile.gettempdir()
        self.exposed: list[tuple[str, tuple[str, ...]]] = []  # see isolation.hidden_python_dirs
        self.proc_dev = -1
        self.inbox: wire.Inbox | None = None  # pumped while a program runs (sandbox.py sends ahead)

    # ------------------------------------------------------------------ limits
    def limits(self, timeout_s: float) -> ChildLimits:
        c = self.config
        uid = c["uid_base"] + self.slot if self.plan.uid_drop else os.getuid()
        gid = uid if self.plan.uid_drop else os.getgid()
        cpu = c["cpu_s"] if c["cpu_s"] is not None else int(-(-timeout_s // 1)) + 1
        return ChildLimits(
            memory_bytes=c["memory_mb"] << 20,
            cpu_s=cpu,
            file_bytes=c["max_file_bytes"],
            processes=c["max_processes"],
            uid=uid,
            gid=gid,
        )

    # ------------------------------------------------------------------ one attempt
    def attempt(
        self, code: str, tests: list[str], first_test: int, timeout_s: float, out: Capture, err: Capture
    ) -> Attempt:
        plan, lim = self.plan, self.limits(timeout_s)
        key = os.urandom(32)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        res_r, res_w = os.pipe()
        if plan.mount_ns:
            workdir = isolation.mount_run_dirs(lim)
        else:
            workdir = tempfile.mkdtemp(prefix="demask-run-", dir=self.tmp_root)
            if plan.uid_drop:
                os.chown(workdir, lim.uid, lim.gid)
        try:
            if plan.pid_ns:
                isolation.unshare(CLONE_NEWPID)
            pid = isolation.fork_without_python_hooks()
        except BaseException:
            if plan.pid_ns:
                isolation.setns(self.pidns_fd, CLONE_NEWPID)
            self._cleanup(workdir)
            raise
        if pid == 0:  # the child: never returns
            self._child(code, tests, first_test, key, out_w, err_w, res_w, workdir, lim)
        if plan.pid_ns:
            isolation.setns(self.pidns_fd, CLONE_NEWPID)
        start = time.monotonic()
        for fd in (out_w, err_w, res_w):
            os.close(fd)
        try:
            return self._supervise(
                pid, key, out_r, err_r, res_r, start + timeout_s, timeout_s, lim.cpu_s, first_test, out, err
            )
        finally:
            for fd in (out_r, err_r, res_r):
                os.close(fd)
            self._cleanup(workdir)

    def _cleanup(self, workdir: str) -> None:
        if self.plan.mount_ns:
            isolation.unmount_run_dirs(self.proc_dev)
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    def _child(self, code, tests, first_test, key, out_w, err_w, res_w, workdir, lim) -> None:
        try:
            os.dup2(self.devnull, 0)
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            os.closerange(3, res_w)
            os.closerange(res_w + 1, 1 << 20)
            isolation.enter_child(self.plan, lim, workdir)
        except BaseException as exc:
            try:
                os.write(res_w, channel.encode(key, 0, channel.SETUP + b" " + harness.describe(exc).encode()))
            finally:
                os._exit(72)
        if self.config["random_seed"] is None:
            random.seed()  # from os.urandom, as a fresh interpreter would
        harness.run(code, tests, first_test, key, res_w)
        os._exit(73)  # not reached

    def _supervise(
        self, pid, key, out_r, err_r, res_r, deadline, timeout_s, cpu_s, first_test, out: Capture, err: Capture
    ) -> Attempt:
        att = Attempt(first_test=first_test)
        reader = channel.RecordReader(key)
        setup_error = None
        try:  # readable when the child exits (Linux >= 5.3); else poll its status below
            pidfd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            pidfd = None
        poller = select.poll()
        sinks = {out_r: out.add, err_r: err.add}
        for fd in (out_r, err_r, res_r, pidfd):
            if fd is not None:
                poller.register(fd, select.POLLIN)
        inbox = self.inbox if self.inbox is not None and not self.inbox.eof else None
        if inbox is not None:
            poller.register(inbox.fd, select.POLLIN)

        def on_result(data: bytes) -> None:
            nonlocal setup_error
            if att.done:
                return
            for payload in reader.feed(data):
                if payload == channel.DONE:
                    att.done = True
                    return
                if payload.startswith(channel.SETUP + b" "):
                    setup_error = payload[6:].decode("utf-8", "replace")
                    return
                part, verdict, error = channel.parse_part(payload)
                att.records[part] = (verdict, error)

        def read(fd: int) -> bool:
            try:
                data = os.read(fd, _READ)
            except BlockingIOError:
                return False
            if not data:
                return False
            on_result(data) if fd == res_r else sinks[fd](data)
            return True

        exited = timed_out = False
        reaped = None
        try:
            while not exited:
                left = deadline - time.monotonic()
                if left <= 0:
                    timed_out = True
                    break
                wait_ms = left * 1000 + 1 if pidfd is not None else min(left * 1000 + 1, 5)
                for fd, _ in poller.poll(wait_ms):
                    if fd == pidfd:
                        exited = True
                    elif inbox is not None and fd == inbox.fd:
                        inbox.pump()
                        if inbox.eof:
                            poller.unregister(fd)
                    elif not read(fd):
                        poller.unregister(fd)
                if pidfd is None:
                    reaped = os.wait4(pid, os.WNOHANG)
                    exited = reaped[0] == pid
            if not exited:
                _kill(pid)
            if reaped is None or reaped[0] != pid:
                reaped = os.wait4(pid, 0)
            _, status, usage = reaped
        finally:
            if pidfd is not None:
                os.close(pidfd)
        if not self.plan.pid_ns:
            if self.plan.uid_drop:
                isolation.kill_uid(self.limits(timeout_s).uid)
            sweep_descendants()
        for fd in (out_r, err_r, res_r):  # every writer is gone now: read to the end
            os.set_blocking(fd, False)
            while read(fd):
                pass
        if not att.done:
            reader.close()
        cpu = usage.ru_utime + usage.ru_stime
        if setup_error is not None:
            att.records.clear()
            att.stop = (KILLED, f"sandbox setup failed: {setup_error}")
        elif reader.tampered and not att.done:
            att.stop = (KILLED, "result channel tampered with (a forged or corrupted record)")
        elif timed_out:
            att.stop = (TIMEOUT, f"wall-clock limit of {timeout_s:g} s exceeded")
        elif os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            if sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu >= cpu_s - 0.05):
                att.stop = (TIMEOUT, f"CPU time limit of {cpu_s} s exceeded")
            else:
                att.stop = (KILLED, f"killed by signal {_signame(sig)}")
        else:
            att.stop = (KILLED, f"exited with status {os.WEXITSTATUS(status)} before the tests finished")
        if att.done:
            att.stop = None
        return att

    # ------------------------------------------------------------------ one program
    def run_program(self, req: dict) -> dict:
        code, tests = req["code"], list(req["tests"])
        timeout_s = req["timeout_s"]
        cap = self.config["max_output_bytes"]
        out, err = Capture(cap), Capture(cap)
        outcome = ProgramOutcome(len(tests), self.config["max_restarts"])
        start = time.monotonic()
        first: int | None = 0
        while first is not None:
            if first > 0:
                marker = f"\n[demask sandbox: restarted at test {first + 1}]\n".encode()
                out.add(marker)
                err.add(marker)
            first = outcome.add(self.attempt(code, tests, first, timeout_s, out, err))
        result = outcome.finish()
        result.update(
            stdout=out.text(), stderr=err.text(), duration_s=time.monotonic() - start, attempts=outcome.attempts
        )
        return result

    # ------------------------------------------------------------------ start-up
    def probe(self, plan: IsolationPlan) -> str | None:
        """Run a trivial program under ``plan``; None if it passed, else what failed."""
        saved, self.plan = self.plan, plan
        try:
            att = self.attempt("x = 1", ["assert x == 1"], 0, 10.0, Capture(4096), Capture(4096))
        except OSError as exc:
            return str(exc)
        finally:
            self.plan = saved
        if att.done and all(v == "passed" for v, _ in att.records.values()) and len(att.records) == 2:
            return None
        return att.stop[1] if att.stop else "probe program did not pass"

    def detect(self) -> IsolationPlan:
        c = self.config
        notes = [
            f"{flag}=False" for flag in ("isolate_network", "isolate_filesystem", "isolate_processes") if not c[flag]
        ]
        want = dict(pid_ns=c["isolate_processes"], mount_ns=c["isolate_filesystem"], ipc_ns=c["isolate_filesystem"])
        if os.geteuid() == 0:
            mode, net, want["uid_drop"] = "root", False, True
            if c["isolate_network"]:
                try:
                    isolation.unshare(isolation.CLONE_NEWNET | isolation.CLONE_NEWUTS)
                    net = True
                except OSError as exc:
                    notes.append(f"network namespace: {exc}")
            uid = c["uid_base"] + self.slot
            isolation.kill_uid(uid)  # leftovers of a crashed worker that had this slot
            self.exposed = isolation.hidden_python_dirs(uid, uid)
        elif any(want.values()) or c["isolate_network"]:
            mode, net, want["caps_drop"] = "userns", c["isolate_network"], True
            try:
                isolation.enter_user_namespace(c["isolate_network"])
                if want["pid_ns"]:
                    isolation.unshare(CLONE_NEWPID)
                    self._become_namespace_init()
            except OSError as exc:
                notes.append(f"not root and no user namespace: {exc}")
                return IsolationPlan(mode="none", notes=tuple(notes))
        else:
            return IsolationPlan(mode="none", notes=tuple(notes))
        self.pidns_fd = os.open("/proc/self/ns/pid", os.O_RDONLY)
        if want["mount_ns"]:
            try:
                isolation.prepare_worker_mounts(self.exposed)
                self.proc_dev = isolation.remember_base_mounts()
            except OSError as exc:
                notes.append(f"mount namespace: {exc}")
                want["mount_ns"] = False
        base = IsolationPlan(mode=mode, net_ns=net)
        plan = replace(base, **want)
        problem = self.probe(plan)
        if problem is not None:  # keep what works on its own, then check the combination
            notes.append(f"full plan failed: {problem}")
            kept = {}
            for name, value in want.items():
                if value:
                    why = self.probe(replace(base, **{name: True}))  # type: ignore[arg-type]  # name: a bool field
                    if why is None:
                        kept[name] = True
                    else:
                        notes.append(f"{name}: {why}")
            plan = replace(base, **kept)  # type: ignore[arg-type]  # keys: bool fields
            if self.probe(plan) is not None:
                plan = base
        if plan.uid_drop and not plan.mount_ns and self.exposed:
            notes.append(
                f"{', '.join(h for h, _ in self.exposed)} cannot be read under the "
                "dropped uid: programs can import only the preloaded modules"
            )
        return replace(plan, notes=tuple(notes))

    def _become_namespace_init(self) -> None:
        """userns mode: fork; the child (PID 1 of the new PID namespace, whose owner user
        namespace we hold capabilities in) carries on as the worker, so that it can
        create a PID namespace per program and setns back; the original waits."""
        pid = os.fork()
        if pid == 0:
            isolation.prctl(isolation.PR_SET_PDEATHSIG, signal.SIGKILL)
            return
        os.closerange(0, 1 << 20)  # the protocol pipes belong to the new worker alone
        _, status = os.waitpid(pid, 0)
        os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


def _kill(pid: int) -> None:
    for kill in (os.kill, os.killpg):
        try:
            kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out.extend(int(p) for p in f.read().split())
    except (OSError, ValueError):
        pass
    return out


def sweep_descendants() -> None:
    """Kill every process below this one (escaped programs were re-parented here: the
    worker is a child subreaper) and reap them, until two scans in a row find none."""
    me, quiet = os.getpid(), 0
    for _ in range(1000):
        stack, found = [me], []
        while stack:
            kids = _children(stack.pop())
            found.extend(kids)
            stack.extend(kids)
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
        quiet = quiet + 1 if not found else 0
        if quiet >= 2:
            return
        if found:
            time.sleep(0.001)


def _signame(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return str(sig)


def main(argv: list[str]) -> None:
    """argv: [config JSON, slot]. Protocol on the inherited stdin/stdout (wire.py)."""
    import json

    config, slot = json.loads(argv[0]), int(argv[1])
    proto_in, proto_out = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)
    # No PR_SET_PDEATHSIG here: it fires when the *thread* that started us ends, and a
    # sandbox may be started from a short-lived thread. A gone parent closes our stdin.
    isolation.prctl(isolation.PR_SET_CHILD_SUBREAPER, 1)
    worker = Worker(config, slot)
    worker.plan = plan = worker.detect()
    if config["require_full_isolation"] and not plan.full:
        wire.send(proto_out, {"hello": False, "error": "full isolation unavailable: " + plan.describe()})
        return
    # What every child would otherwise redo (and pay for in copy-on-write faults):
    isolation.set_environ(isolation.RUN_DIR if plan.mount_ns else tempfile.gettempdir())
    # the program's print() reaches the pipe at once
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # TextIOWrapper; no cast: no typing import here
    for name in config["preload"]:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    if config["random_seed"] is not None:
        random.seed(config["random_seed"])  # every run starts from this state
    gc.collect()
    gc.freeze()  # children do not scan (and copy) the worker's objects
    wire.send(proto_out, {"hello": True, "isolation": plan.describe(), "plan": plan.to_dict(), "pid": os.getpid()})
    worker.inbox = inbox = wire.Inbox(proto_in)
    while True:
        req = inbox.wait()
        if req is None:
            return
        result = worker.run_program(req)
        result["id"] = req["id"]
        result["isolation"] = plan.describe()
        wire.send(proto_out, result)
