"""``RUN/report.html`` as a viewer: a finished tiny run's report opened in headless Chromium.

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: JSON
messages separated by NUL on file descriptors 3 and 4, what Playwright uses), so the test
needs no Python package beyond the standard library and no network port. It checks that
every video loads (``readyState``, decoded size, no media error) and plays in sync under the
episode's control (``currentTime`` advances together), that sorting and filtering the units
table work, and that the console shows no error (console errors, uncaught exceptions, failed
loads), and saves a screenshot under the test's tmp dir. Without ``/usr/bin/chromium``
(Debian's ``chromium``; ``scripts/setup_system.sh`` installs it when run as root, as
``make test`` does) the browser tests skip, saying so.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import augment  # noqa: F401  (import order)
from augment.config import config_from_dict
from augment.demo import write_demo_models
from augment.report import write_report
from augment.runner import AugmentRun
from test_augment_loop import small_config

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium: install Debian's `chromium` package (scripts/setup_system.sh does, as root)")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--autoplay-policy=no-user-gesture-required", "--mute-audio", "--remote-debugging-pipe")


@pytest.fixture(scope="module")
def report_run(tmp_path_factory):
    """A finished run: 2 episodes x (2 painted variants + the replay), report written."""
    models = write_demo_models(tmp_path_factory.mktemp("viewer_models"))
    run_dir = tmp_path_factory.mktemp("viewer_run") / "run"
    AugmentRun(config_from_dict(small_config(models, replay=True)), run_dir, progress=False).run()
    return run_dir


# -- the page without a browser -------------------------------------------------------------
def _links(page: str) -> list[str]:
    return re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", page)


def test_report_is_one_relative_folder_with_browser_playable_videos(report_run):
    import imageio_ffmpeg

    page = (report_run / "report.html").read_text()
    links = _links(page)
    assert links and not [u for u in links if re.match(r"^(https?:|file:|/)", u)]  # offline, relocatable
    files = [u for u in links if not u.startswith("#")]
    assert [u for u in files if not (report_run / u).exists()] == []
    media = [u for u in files if u.endswith((".mp4", ".png", ".gif"))]
    assert media and all(u.startswith("report/") for u in media)  # the viewer's assets: RUN/report/ only
    assert "<script" in page and "<link" not in page  # JS and CSS inline
    videos = [u for u in files if u.endswith(".mp4")]
    # per episode: ground truth, depth, semantics, the replay and 2 painted variants
    assert len(videos) == 2 * 6
    probe = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(report_run / videos[0])],
                           capture_output=True, text=True).stderr
    assert "h264" in probe and "yuv420p" in probe, probe
    # the units table: every unit, with check values and the decisions
    assert page.count("<tr data-decision=") == 6
    assert "check: blur" in page and "replay (evaluation)" in page
    # links to the exported dataset's files
    assert re.search(r"href='export/orv_aug_test/1\.0\.0/features\.json'", page)
    # the static copies the earlier report had stay
    assert "Contact sheets" in page and page.count("<img src='report/sheet_") == 2


def test_projected_gpu_time_is_shown_where_the_run_records_one(report_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(report_run, copy)
    state_path = copy / "manifest" / "run.json"
    state = json.loads(state_path.read_text())
    state["projected_gpu_seconds"] = {"rollout": 20.0, "painter": 4.0, "total": 24.0, "utilisation": 0.4,
                                      "preset": "paper", "paper_rollout_seconds": 19.0}
    state_path.write_text(json.dumps(state))
    page = write_report(copy).read_text()
    units = state["timings"]["rollouts"]["units"]
    assert "projected H100 s/unit" in page and "<b>24 s</b> (rollout 20 s, painter 4 s)" in page
    assert f"<td>rollouts</td><td>{units}</td>" in page and f"<td>20</td><td>{20.0 * units / 3600:.3g}</td>" in page
    state["projected_gpu_seconds"] = {"error": "RuntimeError: out of memory"}
    state_path.write_text(json.dumps(state))
    page = write_report(copy).read_text()
    assert "projected H100 s/unit" not in page and "its count failed (RuntimeError: out of memory)" in page


# -- Chromium over the DevTools pipe ---------------------------------------------------------
class Chromium:
    """Just enough of the DevTools protocol: commands and the events of one page."""

    def __init__(self, tmp: Path):
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def fds_3_and_4():  # Chromium reads commands from fd 3 and writes answers to fd 4
            r, w = os.dup(to_chrome_r), os.dup(from_chrome_w)
            os.dup2(r, 3)
            os.dup2(w, 4)

        self.proc = subprocess.Popen([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp / 'profile'}", "about:blank"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     preexec_fn=fds_3_and_4, pass_fds=(3, 4))
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._next_id = 0
        self._messages: queue.Queue = queue.Queue()
        self._answers: dict[int, dict] = {}
        self.events: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.session = None

    def _read(self) -> None:
        buffer = b""
        while True:
            chunk = os.read(self._from_chrome, 1 << 16)
            if not chunk:
                self._messages.put(None)
                return
            buffer += chunk
            while b"\0" in buffer:
                raw, buffer = buffer.split(b"\0", 1)
                self._messages.put(json.loads(raw))

    def _pump(self, timeout: float) -> None:
        message = self._messages.get(timeout=timeout)
        if message is None:
            raise RuntimeError("chromium closed the DevTools pipe")
        if "id" in message:
            self._answers[message["id"]] = message
        else:
            self.events.append(message)

    def send(self, method: str, params: dict | None = None, session: bool = True, timeout: float = 60) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        end = time.time() + timeout
        while self._next_id not in self._answers:
            self._pump(max(0.05, end - time.time()))
            if time.time() > end:
                raise TimeoutError(method)
        answer = self._answers.pop(self._next_id)
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return answer.get("result", {})

    def wait_event(self, method: str, timeout: float = 60) -> dict:
        end = time.time() + timeout
        while True:
            for event in self.events:
                if event.get("method") == method:
                    return event
            self._pump(max(0.05, end - time.time()))
            if time.time() > end:
                raise TimeoutError(method)

    def open(self, url: str) -> None:
        target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True},
                                 session=False)["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            self.send(f"{domain}.enable")
        self.send("Emulation.setDeviceMetricsOverride", {"width": 1400, "height": 1600, "deviceScaleFactor": 1,
                                                         "mobile": False})
        self.send("Page.navigate", {"url": url})
        self.wait_event("Page.loadEventFired")

    def js(self, expression: str, timeout: float = 60):
        result = self.send("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                                "returnByValue": True}, timeout=timeout)
        if "exceptionDetails" in result:
            raise AssertionError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and failed loads (Log entries of level error)."""
        out = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                out.append("console: " + " ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
            elif method == "Runtime.exceptionThrown":
                out.append("exception: " + json.dumps(params["exceptionDetails"])[:500])
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                out.append(f"log: {params['entry'].get('text')} {params['entry'].get('url', '')}")
        return out

    def close(self) -> None:
        try:
            self.send("Browser.close", session=False, timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_chrome)


@pytest.fixture()
def browser(tmp_path):
    chrome = Chromium(tmp_path)
    yield chrome
    chrome.close()


WAIT_FOR_VIDEOS = """
new Promise((resolve) => {
  const videos = [...document.querySelectorAll('video')];
  const end = Date.now() + 30000;
  (function check() {
    const ready = videos.every(v => v.readyState >= 2 || v.error);
    if (ready || Date.now() > end) {
      resolve(videos.map(v => ({src: v.getAttribute('src'), ready: v.readyState, error: v.error && v.error.code,
                                width: v.videoWidth, height: v.videoHeight, duration: v.duration})));
    } else setTimeout(check, 100);
  })();
})
"""

PLAY_FIRST_EPISODE = """
new Promise((resolve) => {
  const player = document.querySelector('.player');
  const videos = [...player.querySelectorAll('video')];
  const fps = parseFloat(player.dataset.fps);
  player.orvPlay();
  setTimeout(() => {
    const state = {times: videos.map(v => v.currentTime), paused: videos.map(v => v.paused),
                   errors: videos.map(v => v.error && v.error.code), fps: fps,
                   label: player.querySelector('.frame').textContent};
    player.orvPause();
    resolve(state);
  }, 1200);
})
"""

COLUMN = """
((name) => {
  const table = document.getElementById('units');
  const col = [...table.tHead.rows[0].cells].findIndex(th => th.textContent === name);
  return [...table.tBodies[0].rows].filter(r => !r.hidden).map(r => {
    const td = r.cells[col];
    return td.dataset.value !== undefined ? (td.dataset.value === '' ? null : parseFloat(td.dataset.value))
                                          : td.textContent;
  });
})
"""


def _click_header(chrome: Chromium, name: str) -> None:
    chrome.js(f"[...document.querySelectorAll('#units th')].find(th => th.textContent === {json.dumps(name)}).click()")


@needs_chromium
def test_report_opens_in_chromium_videos_play_in_sync_table_sorts_and_filters(report_run, browser, tmp_path):
    start = time.perf_counter()
    browser.open((report_run / "report.html").resolve().as_uri())

    videos = browser.js(WAIT_FOR_VIDEOS)
    assert len(videos) == 12
    for v in videos:
        assert v["error"] is None and v["ready"] >= 2, v  # loaded and decodable
        assert v["width"] >= 128 and v["height"] >= 128 and v["duration"] > 0.5, v  # 8 frames at 5 fps

    played = browser.js(PLAY_FIRST_EPISODE)
    times = np.array(played["times"])
    assert all(e is None for e in played["errors"]) and not any(played["paused"]), played
    assert (times > 0.2).all(), played  # every video of the episode advanced
    spread = np.abs(times - times[0])
    assert (np.minimum(spread, 1.6 - spread) <= 1.5 / played["fps"]).all(), played  # in sync (looping at 1.6 s)
    assert re.fullmatch(r"frame \d+ / 7", played["label"])

    # sorting: numbers ascending, then descending on a second click; text too
    _click_header(browser, "check: blur")
    values = browser.js(f"{COLUMN}('check: blur')")
    assert len(values) == 6 and values == sorted(values)
    _click_header(browser, "check: blur")
    assert browser.js(f"{COLUMN}('check: blur')") == sorted(values, reverse=True)
    _click_header(browser, "unit")
    units = browser.js(f"{COLUMN}('unit')")
    assert units == sorted(units) and len(units) == 6

    # filtering: text, then the decision menu
    browser.js("(() => { const f = document.getElementById('unit-filter'); f.value = '__replay';"
               " f.dispatchEvent(new Event('input')); })()")
    assert browser.js(f"{COLUMN}('unit')") == [u for u in units if u.endswith("__replay")]
    assert browser.js("document.getElementById('unit-count').textContent") == "2 of 6 units"
    browser.js("(() => { const f = document.getElementById('unit-filter'); f.value = '';"
               " f.dispatchEvent(new Event('input')); const d = document.getElementById('decision-filter');"
               " d.value = 'replay (evaluation)'; d.dispatchEvent(new Event('change')); })()")
    assert browser.js(f"{COLUMN}('decision')") == ["replay (evaluation)"] * 2
    browser.js("(() => { const d = document.getElementById('decision-filter'); d.value = '';"
               " d.dispatchEvent(new Event('change')); })()")
    assert len(browser.js(f"{COLUMN}('unit')")) == 6

    # the seek slider moves every video of the episode to the frame
    browser.js("(() => { const s = document.querySelector('.player input.seek'); s.value = 5;"
               " s.dispatchEvent(new Event('input')); })()")
    times = browser.js("new Promise(r => setTimeout(() => r([...document.querySelector('.player')"
                       ".querySelectorAll('video')].map(v => v.currentTime)), 300))")
    assert np.allclose(times, 5.5 / 5, atol=0.05), times

    browser.js("document.getElementById('episodes').scrollIntoView()")
    shot = tmp_path / "report.png"
    shot.write_bytes(__import__("base64").b64decode(browser.send("Page.captureScreenshot", {"format": "png"})["data"]))
    assert shot.stat().st_size > 10_000
    assert browser.errors() == []
    print(f"chromium checks: {time.perf_counter() - start:.1f} s; screenshot {shot}")


@needs_chromium
def test_a_copied_report_folder_plays_on_its_own(report_run, browser, tmp_path):
    """report.html + report/ alone (no run beside them): the viewer still loads every video."""
    copy = tmp_path / "copied"
    copy.mkdir()
    shutil.copy2(report_run / "report.html", copy / "report.html")
    shutil.copytree(report_run / "report", copy / "report")
    browser.open((copy / "report.html").as_uri())
    videos = browser.js(WAIT_FOR_VIDEOS)
    assert len(videos) == 12 and all(v["error"] is None and v["ready"] >= 2 for v in videos), videos
    # only the links to the run's outputs (export, verdicts) are missing, and they are not loaded
    assert browser.errors() == []
