"""`demask view`: the trace JSON, the HTTP API, and the page in a real headless browser."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request

import pytest

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")

import demask  # noqa: E402
from demask.viewer.app import create_viewer_app, load_replay, trace_json  # noqa: E402

PROMPT = 'def scale(n):\n    """Subtract 3.\n    Return it times 2.\n    >>> scale(5)\n    4\n    """\n'


@pytest.fixture(scope="module")
def llm():
    return demask.load("tinycode-mdm")


def test_trace_json_describes_every_position_and_step(llm):
    t = trace_json(llm, PROMPT, "tinycode-mdm", policy="confidence", steps=48, block_length=None, cache="none")
    assert t["gen_length"] == 48 == len(t["tokens"]) == len(t["commit_step"]) == len(t["confidence"])
    committed = [p for s in t["steps"] for p in s["positions"]]
    assert len(committed) == len(set(committed))  # each position committed once
    for s, step in enumerate(t["steps"]):
        assert all(t["commit_step"][p] == s for p in step["positions"])
    assert [s["nfe"] for s in t["steps"]] == list(range(1, len(t["steps"]) + 1))
    unfilled = [p for p, s in enumerate(t["commit_step"]) if s < 0]
    assert not unfilled or (t["stopped_at"] is not None and min(unfilled) > t["stopped_at"])
    assert t["completion"] == llm.generate(PROMPT, policy="confidence", steps=48, block_length=None, cache="none")
    json.dumps(t)  # the page reads it as JSON


class Viewer:
    def __init__(self, app) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{self.port}"

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=60) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def post(self, path: str, body: dict) -> tuple[int, dict]:
        req = urllib.request.Request(self.url + path, json.dumps(body).encode(), {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@pytest.fixture(scope="module")
def viewer(llm):
    replay = trace_json(llm, PROMPT, "tinycode-mdm")
    v = Viewer(create_viewer_app({"tinycode-mdm": lambda: llm}, replay))
    yield v
    v.stop()


def test_http_api(viewer):
    status, page = viewer.get("/")
    assert status == 200 and "<script>" in page and "http" not in page.split("<script>")[1].split("fetch")[0]
    assert "cdn" not in page.lower()  # works offline
    status, models = viewer.get("/api/models")
    assert status == 200 and json.loads(models)["models"] == ["tinycode-mdm"]
    status, trace = viewer.post("/api/decode", {"prompt": PROMPT, "policy": "confidence", "gen_length": 16})
    assert status == 200 and trace["gen_length"] == 16 and trace["steps"]
    status, err = viewer.post("/api/decode", {"prompt": PROMPT, "policy": "confidnce"})
    assert status == 400 and "confidence" in err["error"]
    status, err = viewer.post("/api/decode", {"prompt": PROMPT, "model": "gpt"})
    assert status == 400 and "tinycode-mdm" in err["error"]
    status, replay = viewer.get("/api/replay")
    assert status == 200 and json.loads(replay)["gen_length"] == 48


def test_replay_file_is_checked(tmp_path):
    bad = tmp_path / "t.json"
    bad.write_text('{"tokens": []}')
    with pytest.raises(ValueError, match="not a demask view trace"):
        load_replay(bad)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _chromium(*args: str) -> subprocess.CompletedProcess:
    flags = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
             "--virtual-time-budget=20000", "--window-size=1200,700"]  # fmt: skip
    assert CHROMIUM is not None
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=180)


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium: .ci/run installs Debian's chromium")
def test_the_page_renders_a_48_token_decode_in_a_real_browser(viewer, tmp_path):
    """The page decodes on load (``auto``) and shows the last step: 48 tiles, every committed
    one numbered with its commit step, the NFE counter at the decode's NFE."""
    query = urllib.parse.urlencode({"prompt": PROMPT, "policy": "confidence", "gen_length": 48, "auto": 1,
                                    "step": "last"})  # fmt: skip
    dom = _chromium("--dump-dom", f"{viewer.url}/?{query}").stdout
    assert dom.count('class="tile') == 48, dom[-2000:]
    steps = [int(x) for x in __import__("re").findall(r'data-step="(\d+)"', dom)]
    assert steps and max(steps) >= 2 and len(set(steps)) > 1  # the commit order is in the picture
    nfe = int(__import__("re").search(r'<span id="nfe">(\d+)</span>', dom).group(1))
    assert nfe == max(steps)
    shot = tmp_path / "view.png"
    _chromium(f"--screenshot={shot}", f"{viewer.url}/?{query}")
    assert shot.is_file() and shot.stat().st_size > 10_000
