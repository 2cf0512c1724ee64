"""A real headless browser (Debian's chromium) driven over the Chrome DevTools Protocol, for the
`assistant web` test and its screenshot: open a page, type into it, read what the app drew.

The app draws on a canvas (xterm.js), so the screen cannot be read from the page's DOM; a
script added before the page's own records every byte the app sends over its websocket, which
is what the terminal renders.

    python -m tests.browser        # writes docs/screenshots/web.png (a scratch data folder)
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
         "--disable-extensions", "--disable-sync", "--no-default-browser-check", "--mute-audio"]
ANSI = re.compile(r"\x1b\[[0-9;?<=>]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)|\x1b[()][0-9A-Za-z]|\x1b[=>78]")
RECORD = """
(() => {
  const Original = window.WebSocket;
  window.__screen = [];
  const decoder = new TextDecoder();
  class Recorded extends Original {
    constructor(...args) {
      super(...args);
      this.addEventListener("message", (event) => {
        if (typeof event.data !== "string") window.__screen.push(decoder.decode(event.data, {stream: true}));
      });
    }
  }
  window.WebSocket = Recorded;
})();
"""


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


class Browser:
    def __init__(self, width: int = 1280, height: int = 800) -> None:
        self.size = (width, height)
        self.profile = Path(tempfile.mkdtemp(prefix="assistant-chromium-"))
        self.process: subprocess.Popen[bytes] | None = None
        self.ids = itertools.count(1)
        self.ws: Any = None
        self.closing = contextlib.ExitStack()

    def __enter__(self) -> Browser:
        from websockets.sync.client import connect

        binary = chromium()
        if binary is None:
            raise RuntimeError("chromium is not installed")
        self.process = subprocess.Popen(
            [binary, *FLAGS, f"--window-size={self.size[0]},{self.size[1]}", "--remote-debugging-port=0",
             f"--user-data-dir={self.profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("chromium did not start")
            time.sleep(0.05)
        port = port_file.read_text().split()[0]
        pages = [t for t in httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json() if t["type"] == "page"]
        self.ws = self.closing.enter_context(connect(pages[0]["webSocketDebuggerUrl"], max_size=None,
                                                     open_timeout=20))
        self.send("Page.enable")
        self.send("Page.addScriptToEvaluateOnNewDocument", source=RECORD)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.closing.close()
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        shutil.rmtree(self.profile, ignore_errors=True)

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        number = next(self.ids)
        self.ws.send(json.dumps({"id": number, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=60))
            if message.get("id") == number:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str) -> Any:
        return self.send("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def open(self, url: str) -> None:
        self.send("Page.navigate", url=url)

    def screen(self) -> str:
        """Everything the app has drawn so far, as text (escape sequences removed)."""
        return ANSI.sub("", self.evaluate("(window.__screen || []).join('')") or "")

    def wait_for_text(self, text: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.screen():
            if time.monotonic() > deadline:
                raise AssertionError(f"the page never showed {text!r}; it showed: {self.screen()[-2000:]!r}")
            time.sleep(0.1)

    def type(self, text: str) -> None:
        """Into the terminal: its hidden textarea takes the keys, as when a person types."""
        self.evaluate("document.querySelector('.xterm-helper-textarea').focus()")
        self.send("Input.insertText", text=text)

    def press_enter(self) -> None:
        key = {"key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13, "nativeVirtualKeyCode": 13}
        self.send("Input.dispatchKeyEvent", type="rawKeyDown", **key)
        self.send("Input.dispatchKeyEvent", type="char", text="\r", **key)
        self.send("Input.dispatchKeyEvent", type="keyUp", **key)

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"]))


def main() -> None:
    """The screenshot for docs/screenshots/web.png: the embedded model answering in a browser."""
    import sqlite3

    from tests.serve_process import ROOT, WebProcess

    home = Path(tempfile.mkdtemp(prefix="assistant-web-demo-")) / "home"
    env = {"ASSISTANT_TEMPERATURE": "0", "ASSISTANT_SEED": "42", "ASSISTANT_MAX_TOKENS": "60"}
    with WebProcess(home, env=env) as web, Browser(1200, 700) as browser:
        browser.open(web.url)
        browser.wait_for_text("search past conversations")
        browser.type("What is a GGUF file? Answer in two sentences.")
        browser.press_enter()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with sqlite3.connect(home / "assistant.db") as db:
                if db.execute("SELECT COUNT(*) FROM responses WHERE status = 'ok'").fetchone()[0]:
                    break
            time.sleep(0.2)
        time.sleep(1.0)  # the last frame reaches the browser
        out = ROOT / "docs" / "screenshots" / "web.png"
        browser.screenshot(out)
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
