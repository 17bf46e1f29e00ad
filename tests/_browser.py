"""A page in a real browser: headless Chromium driven over the DevTools protocol on a pipe (no extra packages).

``load_page(html, screenshot)`` opens a local HTML file in a fresh headless Chromium with the network cut off (an
unreachable proxy, every host name unresolvable), records every request the page makes, waits for the load
event, decodes every image, writes a full-page PNG screenshot and returns what it saw. ``find_chromium`` names the
browser or None. The protocol: JSON messages ending in a NUL byte, commands on fd 3, replies and events on fd 4
(``--remote-debugging-pipe``).
"""
from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

# every image: decoded (img.decode() rejects what cannot be decoded), with its natural size
IMAGES_JS = """Promise.all(Array.from(document.images).map(img => img.decode().then(
    () => ({src: img.src.slice(0, 40), width: img.naturalWidth, height: img.naturalHeight}),
    err => ({src: img.src.slice(0, 40), error: String(err)}))))"""


def find_chromium() -> str | None:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class PageLoad:
    requests: list[str] = field(default_factory=list)  # every URL the page asked for
    images: list[dict[str, Any]] = field(default_factory=list)
    title: str = ""
    console_errors: list[str] = field(default_factory=list)


class _Pipe:
    def __init__(self, write_fd: int, read_fd: int, deadline: float):
        self.w, self.r, self.deadline = write_fd, read_fd, deadline
        self.buf = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def _read_message(self) -> dict[str, Any]:
        while b"\0" not in self.buf:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("Chromium did not answer in time")
            ready, _, _ = select.select([self.r], [], [], left)
            if ready:
                chunk = os.read(self.r, 1 << 20)
                if not chunk:
                    raise ConnectionError("Chromium closed the DevTools pipe")
                self.buf += chunk
        msg, _, self.buf = self.buf.partition(b"\0")
        return json.loads(msg)

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        self.next_id += 1
        msg: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.w, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._read_message()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str) -> dict[str, Any]:
        for i, ev in enumerate(self.events):
            if ev.get("method") == method:
                return self.events.pop(i)
        while True:
            ev = self._read_message()
            if ev.get("method") == method:
                return ev
            self.events.append(ev)


def _high(*fds: int) -> tuple[int, ...]:
    """The same pipe ends at descriptors >= 10, so that moving them to 3 and 4 cannot close one another."""
    out = tuple(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in fds)
    for fd in fds:
        os.close(fd)
    return out


def load_page(html: Path, screenshot: Path, chromium: str, timeout_s: float = 90.0) -> PageLoad:
    cmd_r, cmd_w = _high(*os.pipe())  # we write commands, Chromium reads them on fd 3
    ev_r, ev_w = _high(*os.pipe())  # Chromium writes on fd 4, we read
    profile_dir = tempfile.mkdtemp(prefix="rooflab-chromium-")
    args = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
            "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--remote-debugging-pipe",
            "--proxy-server=http://127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND",
            f"--user-data-dir={profile_dir}", "--window-size=1280,900", "about:blank"]
    # fd 3 and 4 in the browser: bash moves the pipe ends there, then becomes the browser
    shell = f'exec "$@" 3<&{cmd_r} 4>&{ev_w} {cmd_r}<&- {ev_w}>&-'
    proc = subprocess.Popen(["bash", "-c", shell, "bash", *args], pass_fds=(cmd_r, ev_w),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(cmd_r)
    os.close(ev_w)
    out = PageLoad()
    try:
        cdp = _Pipe(cmd_w, ev_r, time.monotonic() + timeout_s)
        target = cdp.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = cdp.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Network", "Runtime"):
            cdp.send(f"{domain}.enable", session=session)
        cdp.send("Page.navigate", {"url": html.resolve().as_uri()}, session=session)
        cdp.wait_for("Page.loadEventFired")
        out.images = cdp.send("Runtime.evaluate", {"expression": IMAGES_JS, "awaitPromise": True,
                                                   "returnByValue": True}, session=session)["result"]["value"]
        out.title = cdp.send("Runtime.evaluate", {"expression": "document.title", "returnByValue": True},
                             session=session)["result"]["value"]
        size = cdp.send("Page.getLayoutMetrics", session=session)["cssContentSize"]
        shot = cdp.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                   "clip": {"x": 0, "y": 0, "width": size["width"],
                                                            "height": size["height"], "scale": 1}},
                        session=session)
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        for ev in cdp.events:
            if ev.get("method") == "Network.requestWillBeSent":
                out.requests.append(ev["params"]["request"]["url"])
            elif ev.get("method") == "Runtime.exceptionThrown":
                out.console_errors.append(str(ev["params"]))
        try:
            cdp.send("Browser.close")
        except (ConnectionError, RuntimeError, TimeoutError):
            pass
    finally:
        os.close(cmd_w)
        os.close(ev_r)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(profile_dir, ignore_errors=True)
    return out
