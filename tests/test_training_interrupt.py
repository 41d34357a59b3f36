"""Ctrl-C during `demask train`: the step in progress finishes, a checkpoint is written, the
command exits 130 without a traceback, and --resume continues from that step."""

import os
import signal
import subprocess
import sys
import time

import pytest
from helpers import tiny_pretrain_recipe

from demask.training.interrupt import Interrupt


def test_one_interrupt_is_a_request_two_abort():
    stop = Interrupt()
    with stop.installed():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)  # the handler runs between bytecodes of the main thread
        assert stop.requested
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)


def test_an_abortable_phase_ends_at_once_and_is_recorded():
    stop = Interrupt()
    reached_end = False
    with stop.installed(), stop.abortable():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)
        reached_end = True
    assert stop.requested and not reached_end
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def _demask(*args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "demask.cli.main", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kw)  # fmt: skip


@pytest.mark.slow
def test_ctrl_c_saves_the_step_and_resume_continues(tmp_path):
    recipe, out = tiny_pretrain_recipe(tmp_path), tmp_path / "run"
    proc = _demask("train", "--recipe", str(recipe), "--out", str(out), "--max-steps", "100000",
                   "--warmup-steps", "0", "--save-every", "0")  # fmt: skip
    log = out / "train_log.csv"
    deadline = time.monotonic() + 180
    while not (log.is_file() and len(log.read_text().splitlines()) >= 4):  # header + 3 steps
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "training did not start"
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stdout + stderr
    assert "interrupted after step" in stderr and "Traceback" not in stderr
    step = int((out / "latest").read_text().strip().split("-")[1])
    assert step >= 3  # save_every 0 writes only at the end: this checkpoint is the interrupt's

    resumed = _demask("train", "--recipe", str(recipe), "--out", str(out), "--max-steps", str(step + 2),
                      "--warmup-steps", "0", "--save-every", "0", "--resume")  # fmt: skip
    stdout, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stdout + stderr
    assert f"done: {step + 2} steps" in stdout
