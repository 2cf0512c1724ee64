"""MCP servers as a source of tools: each `[mcp_servers.NAME]` runs over stdio, and its tools join
the tool loop as `NAME__TOOL`, validated, confirmed and traced like any other.

A server process gets no environment of ours beyond a few harmless variables (PATH, HOME, USER,
LOGNAME, SHELL, TERM) plus the `env` its table gives: API keys in the user's environment never
reach it. Its stderr goes to the log file, not the terminal. The MCP client (the `mcp` package,
extra `mcp`) is async; it runs on an event loop of its own in a background thread, so a tool call
from a worker thread waits for it with a timeout.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from pathlib import Path
from typing import Any

from engine.config import McpServer
from engine.errors import ConfigError
from engine.paths import ensure_private_dir
from plugins.hookspecs import Tool, ToolContext, ToolError, hookimpl

log = logging.getLogger(__name__)
CONNECT_TIMEOUT_S = 20.0


class McpTools:
    """A plugin object: `register_tools` connects to every configured server (once) and registers
    its tools. A server that cannot start is reported by name and left out."""

    def __init__(
        self, servers: dict[str, McpServer], log_file: Path, errors: list[str] | None = None
    ) -> None:
        """`errors` gets a line for each server that cannot start (the plugin manager's list)."""
        try:
            import mcp  # noqa: F401
        except ImportError as exc:
            raise ConfigError("MCP servers are configured, but the MCP client is not installed.",
                              hint="pipx inject assistant mcp (or pip install 'assistant[mcp]').") from exc
        self.servers = servers
        self.log_file = log_file
        self.errors: list[str] = errors if errors is not None else []
        self._sessions: dict[str, Any] = {}
        self._tasks: list[asyncio.Future[None]] = []
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._thread = threading.Thread(target=self._loop.run_forever, name="mcp", daemon=True)
        self._thread.start()
        self._tools: list[Tool] | None = None

    def _wait(self, coroutine: Any, timeout: float) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    @hookimpl
    def register_tools(self, register) -> None:  # noqa: ANN001 - the hook's own signature
        if self._tools is None:
            self._tools = []
            for name, server in self.servers.items():
                try:
                    listed = self._wait(self._connect(name, server), CONNECT_TIMEOUT_S)
                except Exception as exc:  # a server that fails to start is reported, not fatal
                    message = f"MCP server {name}: could not start: {type(exc).__name__}: {exc}"
                    log.warning(message)
                    self.errors.append(message)
                    continue
                self._tools += [self._tool(name, server, t) for t in listed
                                if server.tools is None or t.name in server.tools]
        for tool in self._tools:
            register(tool)

    async def _connect(self, name: str, server: McpServer) -> list[Any]:
        """Start the server in a task of its own (anyio's scopes must close in the task that
        opened them) and wait until its tools are listed."""
        ready: asyncio.Future[list[Any]] = self._loop.create_future()
        self._tasks.append(asyncio.ensure_future(self._serve(name, server, ready)))
        return await ready

    async def _serve(self, name: str, server: McpServer, ready: asyncio.Future[list[Any]]) -> None:
        from mcp.client.session import ClientSession
        from mcp.client.stdio import StdioServerParameters, stdio_client

        params = StdioServerParameters(command=server.command, args=list(server.args), env=dict(server.env),
                                       cwd=server.cwd)
        try:
            ensure_private_dir(self.log_file.parent)
            with self.log_file.open("a", encoding="utf-8") as errlog:
                async with stdio_client(params, errlog=errlog) as (read, write), \
                        ClientSession(read, write) as session:
                    await session.initialize()
                    self._sessions[name] = session
                    ready.set_result(list((await session.list_tools()).tools))
                    await self._stop.wait()
        except Exception as exc:
            if not ready.done():
                ready.set_exception(exc)
            else:
                log.warning("MCP server %s stopped: %s", name, exc)

    def _tool(self, server_name: str, server: McpServer, tool: Any) -> Tool:
        read_only = bool(tool.annotations and tool.annotations.read_only_hint)
        schema = dict(tool.input_schema or {"type": "object", "properties": {}})
        schema.setdefault("type", "object")
        schema.pop("title", None)

        def call(arguments: dict, context: ToolContext) -> str:
            return self._wait(self._call(server_name, tool.name, arguments), server.timeout_s)

        return Tool(
            name=re.sub(r"\W", "_", f"{server_name}__{tool.name}"),
            description=f"{tool.description or tool.name} (MCP server {server_name})",
            parameters=schema,
            function=call,
            # Unless the server says a tool only reads, assume it acts: the user is asked first.
            side_effects=server.side_effects and not read_only,
            timeout_s=server.timeout_s,
        )

    async def _call(self, server_name: str, tool_name: str, arguments: dict) -> str:
        result = await self._sessions[server_name].call_tool(tool_name, arguments)
        text = "\n".join(getattr(part, "text", f"[{getattr(part, 'type', 'content')}]")
                         for part in result.content)
        if result.is_error:
            raise ToolError(text or f"{tool_name} failed")
        return text

    def close(self) -> None:
        """Stop every server (stdin closed, then the process tree ended) and the loop."""

        async def stop() -> None:
            self._stop.set()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        try:
            self._wait(stop(), 15)
        except Exception as exc:  # shutting down: report, go on
            log.warning("MCP servers did not stop cleanly: %s", exc)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
