"""`assistant web`: the chat app in a browser, through textual-serve (extra `web`).

Each browser tab gets its own `assistant` process (the same app as in a terminal, its screen
sent over a websocket). A page on another site must not be able to drive it: a browser lets any
page open a websocket to 127.0.0.1, so the websocket is accepted only from this server's own
pages (its Origin), and only for the host names it serves (its Host: no DNS rebinding). Bound to
another address than loopback, a token is needed too: in the URL once (`/?token=...`), then in
a cookie only this site gets; compared in constant time, never logged.
"""

from __future__ import annotations

import asyncio
import hmac
import re
import shlex
import signal
import sys
from collections.abc import Callable
from typing import Any

from app.serve import bind, is_loopback
from engine import ConfigError

COOKIE = "assistant_token"
REMOTE_FONT = re.compile(r"<link[^>]*fonts\.googleapis\.com[^>]*>")


def _textual_serve() -> Any:
    try:
        from textual_serve.server import Server
    except ImportError as exc:
        raise ConfigError("The browser app needs textual-serve, which is not installed.",
                          hint="pipx inject assistant textual-serve (or: pip install 'assistant[web]').",
                          ) from exc
    return Server


def app_command(model: str | None) -> str:
    """The command textual-serve starts for each tab: this `assistant`, with the same Python."""
    # The standalone build (PyInstaller) is the app itself; otherwise this Python runs the package.
    program = [sys.executable] if getattr(sys, "frozen", False) else [sys.executable, "-m", "app"]
    command = [*program, *(["--model", model] if model else [])]
    return shlex.join(command)


def make_server(command: str, host: str, port: int, token: str | None, public_url: str) -> Any:
    """A textual-serve Server with the guards described above; `public_url` is the one address
    its pages and websocket are served under (loopback aliases are sent there)."""
    from urllib.parse import urlsplit

    from aiohttp import web

    Server = _textual_serve()
    canonical = urlsplit(public_url).netloc.lower()
    loopback_names = ("localhost", "127.0.0.1", "[::1]") if is_loopback(host) else ()
    aliases = {f"{name}:{port}" for name in loopback_names}

    class GuardedServer(Server):  # type: ignore[misc, valid-type]
        async def _make_app(self) -> web.Application:
            app = await super()._make_app()
            app.middlewares.append(guard)
            return app

        def initialize_logging(self) -> None:
            pass  # our log file, not a rich handler on the terminal

        async def on_startup(self, app: web.Application) -> None:
            pass  # the command prints its own line

    @web.middleware
    async def guard(request: web.Request, handler: Callable[[web.Request], Any]) -> web.StreamResponse:
        asked = request.host.lower()
        if asked != canonical:
            if asked in aliases and request.path == "/":  # localhost:PORT -> the one address
                raise web.HTTPTemporaryRedirect(public_url + str(request.rel_url))
            return web.Response(status=421, text=f"This server answers under {public_url} only.")
        if request.path == "/ws":
            origin = request.headers.get("Origin")
            if origin is not None and origin.rstrip("/").lower() != public_url.lower():
                return web.Response(status=403, text="Only this server's own page may connect.")
        if token is not None and not request.path.startswith("/static/"):
            given = request.query.get("token") or request.cookies.get(COOKIE) or ""
            if not hmac.compare_digest(given.encode(), token.encode()):
                return web.Response(status=401, text="Open the address with its token: /?token=...")
            if request.query.get("token"):  # then a cookie, and the token leaves the address bar
                redirect = web.HTTPFound(str(request.rel_url.with_query({})))
                redirect.set_cookie(COOKIE, token, httponly=True, samesite="Strict")
                raise redirect
        response = await handler(request)
        if request.path == "/" and isinstance(response, web.Response) and response.text:
            # textual-serve's page loads a font from Google: nothing is to leave this machine.
            response.text = REMOTE_FONT.sub("", response.text)
        return response

    return GuardedServer(command, host=host, port=port, title="assistant", public_url=public_url)


def default_public_url(host: str, port: int) -> str:
    """Where browsers reach the server: loopback as 127.0.0.1; a wildcard address (0.0.0.0, ::)
    as this machine's name."""
    name = host.strip("[]")
    if is_loopback(host):
        name = "127.0.0.1" if ":" not in name else "[::1]"
    elif name in ("0.0.0.0", "::", ""):
        import socket

        name = socket.getfqdn()
    elif ":" in name:
        name = f"[{name}]"
    return f"http://{name}:{port}"


def serve(model: str | None, host: str, port: int, token: str | None, announce: Callable[[str], None],
          public_url: str | None = None) -> None:
    """Serve until Ctrl-C; `announce` gets the URL to open."""
    if not is_loopback(host) and not token:
        raise ConfigError(f"Serving the app on {host} would let anyone who can reach this machine use it.",
                          hint="Set a token: ASSISTANT_WEB_TOKEN=... (it goes in the URL once), or serve on "
                               "127.0.0.1.")
    _textual_serve()
    from aiohttp import web

    sock = bind(host, port)
    bound_port = sock.getsockname()[1]
    public_url = (public_url or default_public_url(host, bound_port)).rstrip("/")
    server = make_server(app_command(model), host, bound_port, token, public_url)

    async def main() -> None:
        runner = web.AppRunner(await server._make_app(), access_log=None)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        announce(public_url + "/" + ("?token=TOKEN" if token else ""))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    asyncio.run(main())
