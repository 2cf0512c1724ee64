"""`assistant web`: the chat app served to a browser by textual-serve, checked with HTTP clients
(the guards) and in a real headless chromium (a question typed, the streamed answer drawn)."""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.browser import Browser, chromium
from tests.serve_process import ROOT, WebProcess

pytest.importorskip("textual_serve", reason="textual-serve (extra `web`) is not installed")


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("web") / "home"
    env = {"ASSISTANT_TEMPERATURE": "0", "ASSISTANT_SEED": "42", "ASSISTANT_MAX_TOKENS": "16"}
    with WebProcess(home, env=env) as process:
        yield process


def test_the_page_is_served_without_calls_to_other_sites(web: WebProcess) -> None:
    page = httpx.get(web.url, timeout=30)
    assert page.status_code == 200 and "textual-terminal" in page.text
    assert "googleapis" not in page.text  # textual-serve's web font, removed
    assert re.findall(r'(?:src|href)="(https?://[^"]+)"', page.text) == [
        f"{web.url}static/css/xterm.css", f"{web.url}static/js/textual.js"]


def test_other_sites_cannot_reach_the_app(web: WebProcess) -> None:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    port = web.url.rsplit(":", 1)[1].strip("/")
    rebound = httpx.get(web.url, headers={"Host": f"evil.example:{port}"}, timeout=30)  # DNS rebinding
    assert rebound.status_code == 421
    alias = httpx.get(web.url, headers={"Host": f"localhost:{port}"}, timeout=30)
    assert alias.status_code == 307 and alias.headers["location"] == web.url
    # A page of another site may open a websocket to 127.0.0.1: it is refused before any app starts.
    with pytest.raises(InvalidStatus) as refused:
        with connect(web.url.replace("http", "ws") + "ws", origin="http://evil.example", open_timeout=20):
            pass
    assert refused.value.response.status_code == 403


async def test_off_loopback_a_token_is_needed_once_then_a_cookie() -> None:
    from aiohttp import web as aiohttp_web

    from app.serve import bind
    from app.web import COOKIE, make_server

    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    server = make_server("true", "192.0.2.1", port, "the-web-token", url)  # as if bound elsewhere
    runner = aiohttp_web.AppRunner(await server._make_app())
    await runner.setup()
    await aiohttp_web.SockSite(runner, sock).start()
    try:
        async with httpx.AsyncClient(base_url=url) as http:
            assert (await http.get("/")).status_code == 401
            assert (await http.get("/?token=the-web-tokeN")).status_code == 401
            assert (await http.get("/ws")).status_code == 401
            opened = await http.get("/?token=the-web-token&fontsize=18")
            assert opened.status_code == 302 and opened.headers["location"] == "/"  # token off the address bar
            cookie = opened.headers["set-cookie"]
            assert cookie.startswith(f"{COOKIE}=the-web-token") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
            assert (await http.get("/")).status_code == 200  # the client kept the cookie
    finally:
        await runner.cleanup()


def test_another_address_without_a_token_is_refused() -> None:
    result = subprocess.run([sys.executable, "-m", "app", "web", "--host", "0.0.0.0"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60, env={**os.environ, "ASSISTANT_WEB_TOKEN": ""})
    assert result.returncode == 1 and "ASSISTANT_WEB_TOKEN" in result.stderr


@pytest.mark.skipif(chromium() is None, reason="chromium is not installed (Debian: apt-get install chromium "
                    "chromium-driver); this test needs a real browser")
def test_a_question_typed_in_the_browser_gets_a_streamed_answer(web: WebProcess, tmp_path: Path) -> None:
    question = "What is the capital of France?"
    with Browser(1200, 700) as browser:
        browser.open(web.url)
        browser.wait_for_text("search past conversations")  # the chat app's welcome
        browser.type(question)
        browser.press_enter()
        deadline = time.monotonic() + 120
        rows: list = []
        while not rows and time.monotonic() < deadline:
            time.sleep(0.2)
            if not (web.home / "assistant.db").exists():
                continue  # the app opens its database after its first frame
            with sqlite3.connect(web.home / "assistant.db", timeout=10) as db, contextlib.suppress(
                    sqlite3.OperationalError):  # no such table yet: it is being created
                rows = db.execute(
                    "SELECT r.status, m.content, q.content FROM responses r JOIN messages m ON m.id = r.message_id"
                    " JOIN messages q ON q.id = r.prompt_message_id").fetchall()
        assert rows, f"no answer was logged; the page showed: {browser.screen()[-1500:]!r}"
        status, answer, asked = rows[0]
        assert status == "ok" and asked == question and answer.strip()
        # The answer was drawn in the page: its words reached the browser's terminal.
        words = [w for w in re.findall(r"[A-Za-z]{4,}", answer)][:3]
        for word in words:
            browser.wait_for_text(word, timeout=30)
        shot = tmp_path / "web.png"
        browser.screenshot(shot)
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
