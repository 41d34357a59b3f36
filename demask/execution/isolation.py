"""Linux isolation for one sandboxed run: namespaces, mounts, rlimits, dropped privileges.

Runs inside the worker process (stdlib only; Python 3.11 has no ``os.unshare``, so the
system calls go through ctypes). Three parts:

- worker start-up (``Worker.detect`` in worker.py, with ``enter_user_namespace`` from
  here when not root): find out what this kernel lets us do, as root or, when not root,
  inside a user namespace; the result is an :class:`IsolationPlan` whose ``describe()``
  says plainly what is missing.
- ``prepare_worker_mounts`` (once per worker): a mount namespace of its own in which
  everything is read-only; per run the worker mounts an empty tmpfs /tmp and /dev/shm
  (``mount_run_dirs``) and removes them afterwards.
- ``enter_child`` (in each forked child, before any untrusted code runs): apply the plan.

The per-run PID namespace is made by the worker itself (``unshare(CLONE_NEWPID)``, fork,
``setns`` back), so that the forked child is PID 1 of a fresh namespace and every process
the program starts dies with it. The network namespace (empty: no interface is up) is
entered once by the worker and shared by its runs; an IPC namespace is made per run.

Not covered: cgroups (no memory bound across a program's processes beyond
max_processes x memory_mb), seccomp system-call filtering, and file-system sockets that
are world-writable (they stay reachable; the network namespace only removes the network).
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import signal
from collections.abc import Sequence
from dataclasses import asdict, dataclass

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_RELATIME = 1 << 21

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), f"unshare(0x{flags:x})")


def setns(fd: int, nstype: int) -> None:
    _check(_libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)), f"setns({fd}, 0x{nstype:x})")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    def enc(s: str | None) -> bytes | None:
        return None if s is None else s.encode()

    _check(_libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)), f"mount {target}")


def prctl(option: int, arg: int = 0) -> None:
    _check(_libc.prctl(option, arg, 0, 0, 0), f"prctl({option})")


_libc.fork.restype = ctypes.c_int


def fork_without_python_hooks() -> int:
    """fork(2) without CPython's at-fork machinery (PyOS_AfterFork_Child and the
    ``os.register_at_fork`` callbacks: threading's bookkeeping, random's reseed, ...).

    That machinery repairs locks that *other* threads held at the moment of the fork; a
    single-threaded worker has none, and skipping it saves about 1 ms of CPU and 180
    copy-on-write page faults per run on the machine measured (docs/sandbox.md). With
    other threads alive it falls back to ``os.fork``. (glibc's own fork handlers, e.g.
    malloc's, run either way: this is the same fork(3) that ``os.fork`` calls.)"""
    import sys

    threading = sys.modules.get("threading")
    if threading is not None and threading.active_count() > 1:
        return os.fork()
    pid = _libc.fork()  # ctypes releases the GIL around the call and retakes it after
    if pid < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"fork: {os.strerror(err)}")
    return pid


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def drop_capabilities() -> None:
    """Empty the bounding, effective, permitted and inheritable capability sets."""
    last = 63
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            last = int(f.read())
    except (OSError, ValueError):
        pass
    for cap in range(last + 1):
        if _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() != errno.EINVAL:
            _check(-1, f"drop capability {cap} from the bounding set")
    header = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    data = (_CapData * 2)()
    _check(_libc.capset(ctypes.byref(header), data), "capset(0)")


@dataclass(frozen=True)
class IsolationPlan:
    """What each run gets. ``mode``: "root", "userns" (not root, in a user namespace) or
    "none" (rlimits, a session and a process-tree sweep only). ``notes``: why a feature
    is missing."""

    mode: str = "none"
    pid_ns: bool = False
    net_ns: bool = False
    mount_ns: bool = False
    ipc_ns: bool = False
    uid_drop: bool = False  # a distinct unprivileged uid per worker slot
    caps_drop: bool = False  # userns: capabilities dropped instead (same uid)
    notes: tuple[str, ...] = ()

    @property
    def full(self) -> bool:
        return self.pid_ns and self.net_ns and self.mount_ns and (self.uid_drop or self.caps_drop)

    def describe(self) -> str:
        have = ["rlimits(as,cpu,fsize,nproc)", "own session"]
        if self.pid_ns:
            have.append("pid namespace")
        if self.net_ns:
            have.append("no network (empty net namespace)")
        if self.mount_ns:
            have.append("mount namespace (read-only /, private /tmp)")
        if self.ipc_ns:
            have.append("ipc namespace")
        if self.uid_drop:
            have.append("unprivileged uid per worker, no new privileges")
        if self.caps_drop:
            have.append("user namespace, capabilities dropped, no new privileges")
        text = ("full" if self.full else "WEAKER") + f" isolation [{self.mode}]: " + ", ".join(have)
        missing = []
        if not self.pid_ns:
            missing.append("no pid namespace (escaped processes are killed by a sweep of the worker's descendants)")
        if not self.net_ns:
            missing.append("network reachable")
        if not self.mount_ns:
            missing.append("file system writable wherever the program's uid may write")
        if not (self.uid_drop or self.caps_drop):
            missing.append("program runs with the sandbox owner's uid")
        if missing:
            text += "; MISSING: " + "; ".join(missing)
        if self.notes:
            text += " (" + "; ".join(self.notes) + ")"
        return text

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ChildLimits:
    memory_bytes: int
    cpu_s: int
    file_bytes: int
    processes: int
    uid: int
    gid: int


def set_rlimits(lim: ChildLimits) -> None:
    """Soft = hard for each limit, so that once privileges are dropped none can be raised.

    RLIMIT_CPU soft = hard: the kernel then sends SIGKILL at the limit, which also reaches
    a PID-namespace init (SIGXCPU would be ignored there)."""
    for res, value in (
        (resource.RLIMIT_AS, lim.memory_bytes),
        (resource.RLIMIT_CPU, lim.cpu_s),
        (resource.RLIMIT_FSIZE, lim.file_bytes),
        (resource.RLIMIT_NPROC, lim.processes),
        (resource.RLIMIT_CORE, 0),
        (resource.RLIMIT_NOFILE, 1024),
    ):
        _, hard = resource.getrlimit(res)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(res, (value, value))


# Mounts whose contents only privileged users may change, or that we replace anyway.
_KEEP_WRITABLE_FSTYPES = {
    "proc",
    "sysfs",
    "cgroup",
    "cgroup2",
    "devtmpfs",
    "devpts",
    "mqueue",
    "securityfs",
    "debugfs",
    "tracefs",
    "bpf",
    "pstore",
    "configfs",
    "fusectl",
    "hugetlbfs",
    "binfmt_misc",
    "autofs",
}
_FLAG_NAMES = {
    "nosuid": MS_NOSUID,
    "nodev": MS_NODEV,
    "noexec": MS_NOEXEC,
    "noatime": MS_NOATIME,
    "nodiratime": MS_NODIRATIME,
    "relatime": MS_RELATIME,
}


def _writable_mounts() -> list[tuple[str, int]]:
    """(mount point, its per-mount flags) for writable mounts we must make read-only."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields = left.split()
            point = fields[4].encode().decode("unicode_escape")
            opts = fields[5].split(",")
            fstype = right.split()[0]
            if "rw" not in opts or fstype in _KEEP_WRITABLE_FSTYPES:
                continue
            if point.startswith(("/proc", "/sys", "/dev/pts")):
                continue
            flags = 0
            for name in opts:
                flags |= _FLAG_NAMES.get(name, 0)
            out.append((point, flags))
    return out


def hidden_python_dirs(uid: int, gid: int) -> list[tuple[str, tuple[str, ...]]]:
    """Directories the interpreter needs (its prefix, sys.path) that ``uid`` cannot reach,
    grouped by the outermost ancestor it cannot traverse: e.g. a pyenv Python under
    ``/root`` (mode 700) gives ``[("/root", ("/root/.pyenv/versions/3.11.7",))]``.

    Without this, a program running under a dropped uid could import only the modules
    its worker had already imported."""
    import sys

    found = {os.path.realpath(p) for p in (sys.base_prefix, sys.prefix, *sys.path) if p and os.path.isdir(p)}
    wanted = [p for p in sorted(found) if not any(p != q and p.startswith(q + "/") for q in found)]
    groups: dict[str, list[str]] = {}
    for path in wanted:
        walk = "/"
        for part in path.strip("/").split("/"):
            walk = os.path.join(walk, part)
            if walk != path and not _can_enter(walk, uid, gid):
                groups.setdefault(walk, []).append(path)
                break
    outer = [h for h in groups if not any(h != g and h.startswith(g + "/") for g in groups)]
    return [(h, tuple(p for g in groups if g == h or g.startswith(h + "/") for p in groups[g])) for h in outer]


def _can_enter(path: str, uid: int, gid: int) -> bool:
    st = os.stat(path)
    if st.st_uid == uid:
        return bool(st.st_mode & 0o100)
    if st.st_gid == gid:
        return bool(st.st_mode & 0o010)
    return bool(st.st_mode & 0o001)


def _expose(hidden: str, paths: tuple[str, ...]) -> None:
    """Cover ``hidden`` with an empty tmpfs, then bind ``paths`` (read-only) back at their
    own locations: the interpreter's files become readable, the rest of ``hidden`` (a home
    directory, say) disappears."""
    fds = [os.open(p, os.O_PATH | os.O_DIRECTORY) for p in paths]
    try:
        mount("tmpfs", hidden, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,nr_inodes=256,mode=755")
        for path, fd in zip(paths, fds):
            os.makedirs(path, mode=0o755, exist_ok=True)
            mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
            mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    finally:
        for fd in fds:
            os.close(fd)


def prepare_worker_mounts(exposed: Sequence[tuple[str, tuple[str, ...]]] = ()) -> None:
    """Once per worker: move the worker into its own mount namespace where every
    writable mount (/, /tmp, /dev/shm, ...) is read-only and the interpreter's directories
    are reachable (``hidden_python_dirs``). Its children inherit it; per run the worker
    only mounts a fresh /tmp and /dev/shm (``mount_run_dirs``), which is far cheaper than a
    mount namespace per run (copying and tearing down every mount)."""
    unshare(CLONE_NEWNS)
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    for point, flags in _writable_mounts():
        try:
            mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | flags)
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.EACCES):  # vanished or hidden mount
                raise
    for hidden, paths in exposed:
        _expose(hidden, paths)


RUN_DIR = "/tmp"


def mount_run_dirs(lim: ChildLimits) -> str:
    """Per run, in the worker's mount namespace: an empty tmpfs /tmp owned by the program's
    uid (its working directory) and an empty /dev/shm. Returns the working directory."""
    tmp_bytes = max(4 * lim.file_bytes, 1 << 20)
    mount(
        "tmpfs",
        RUN_DIR,
        "tmpfs",
        MS_NOSUID | MS_NODEV,
        f"size={tmp_bytes},nr_inodes=4096,mode=700,uid={lim.uid},gid={lim.gid}",
    )
    if os.path.isdir("/dev/shm"):
        mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, f"size={tmp_bytes},nr_inodes=1024,mode=1777")
    return RUN_DIR


_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
MNT_DETACH = 2


def unmount_run_dirs(proc_dev: int) -> None:
    """Undo ``mount_run_dirs`` and the child's /proc (every /proc mounted over the
    worker's own, whose st_dev is ``proc_dev``), once every process of the run is dead."""
    for _ in range(16):
        try:
            if os.stat("/proc").st_dev == proc_dev:
                break
        except OSError:
            pass
        _check(_libc.umount2(b"/proc", MNT_DETACH), "umount /proc")
    for point in ("/dev/shm", RUN_DIR):
        if os.path.ismount(point) and os.stat(point).st_dev != _base_dev.get(point):
            _check(_libc.umount2(point.encode(), MNT_DETACH), f"umount {point}")


_base_dev: dict[str, int] = {}


def remember_base_mounts() -> int:
    """Record the worker's own /tmp, /dev/shm and /proc devices; returns /proc's."""
    for point in ("/dev/shm", RUN_DIR, "/proc"):
        if os.path.exists(point):
            _base_dev[point] = os.stat(point).st_dev
    return _base_dev["/proc"]


def scrubbed_environ(workdir: str) -> dict[str, str]:
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": workdir,
        "TMPDIR": workdir,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


def enter_child(plan: IsolationPlan, lim: ChildLimits, workdir: str) -> None:
    """Apply ``plan`` to the calling (freshly forked) process, working in ``workdir``.

    Order matters: namespaces and mounts need privileges, limits must be set before the
    privileges that could raise them are dropped, and the uid is dropped last."""
    os.setsid()
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if plan.ipc_ns:
        unshare(CLONE_NEWIPC)
    if plan.mount_ns and plan.pid_ns:  # a /proc that shows the run's processes only
        mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    os.chdir(workdir)
    # A file past RLIMIT_FSIZE then fails with EFBIG (an OSError) instead of a signal.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    set_rlimits(lim)
    if plan.uid_drop:
        os.setgroups([])
        os.setresgid(lim.gid, lim.gid, lim.gid)
        os.setresuid(lim.uid, lim.uid, lim.uid)
    elif plan.caps_drop:
        drop_capabilities()
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    prctl(PR_SET_DUMPABLE, 0)  # no core files, and /proc/self/mem closed to the program
    if os.environ.get("HOME") != workdir:  # the worker set the rest up once (set_environ)
        set_environ(workdir)


def set_environ(workdir: str) -> None:
    """Replace this process's environment by ``scrubbed_environ(workdir)``."""
    os.environ.clear()
    os.environ.update(scrubbed_environ(workdir))


def kill_uid(uid: int) -> None:
    """Kill every process running as ``uid`` (root only): a forked helper takes that uid
    and sends SIGKILL to -1, i.e. to every process it may signal, which are exactly the
    ones of its uid. Catches what escaped a run when there is no PID namespace, and what
    a crashed worker left behind."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            os.kill(-1, signal.SIGKILL)
        except BaseException:
            pass
        os._exit(0)
    os.waitpid(pid, 0)


# ------------------------------------------------------------------ start-up detection
def enter_user_namespace(isolate_network: bool) -> None:
    """Not root: make this process root-less owner of a new user (and network, UTS)
    namespace, mapping only its own uid and gid; raises OSError where the kernel forbids."""
    uid, gid = os.getuid(), os.getgid()
    unshare(CLONE_NEWUSER | (CLONE_NEWNET | CLONE_NEWUTS if isolate_network else 0))
    with open("/proc/self/setgroups", "w") as f:
        f.write("deny")
    with open("/proc/self/uid_map", "w") as f:
        f.write(f"{uid} {uid} 1")
    with open("/proc/self/gid_map", "w") as f:
        f.write(f"{gid} {gid} 1")
