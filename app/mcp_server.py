"""`assistant mcp`: the user's indexed folders and long-term memory as tools of an MCP server over
stdio (the official `mcp` package), for agents such as Claude Desktop or an editor.

The tools read: search the folders (passages with file:line), read the lines around a passage
(only files the index holds: nothing it skipped, nothing outside the folders), search the
memory. Tools that write (remember a fact, index a folder) are offered only with `mcp_writes =
true`. The chat model is never loaded; stdout carries the protocol, so nothing else may print.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from engine import AssistantError, Engine, Settings

MAX_RESULTS = 20
MAX_CONTEXT_LINES = 200
INSTRUCTIONS = (
    "The user's own files (indexed folders) and what the assistant remembers about the user. "
    "search_folders finds passages with file:line; read_passage shows the lines around one; "
    "search_memory finds remembered facts and preferences."
)


def build_server(engine: Engine) -> Any:
    """The MCP server (mcp.server.mcpserver.MCPServer) with this engine's tools."""
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError
    from mcp_types import ToolAnnotations

    server = MCPServer("assistant", instructions=INSTRUCTIONS)
    reads = ToolAnnotations(read_only_hint=True, open_world_hint=False)
    writes = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)

    async def knowledge() -> Any:
        return await engine.knowledge()

    def failed(exc: AssistantError) -> ToolError:
        return ToolError(str(exc))

    @server.tool(annotations=reads)
    async def search_folders(query: str, limit: int = 5) -> str:
        """Search the user's indexed folders (full text and meaning). Returns the most relevant
        passages, each headed by its location as path:first-last line."""
        limit = max(1, min(limit, MAX_RESULTS))
        try:
            found = await asyncio.to_thread((await knowledge()).search, query, None)
        except AssistantError as exc:
            raise failed(exc) from exc
        if not found:
            return "No passage in the indexed folders matches."
        return "\n\n".join(f"[{n}] {p.location}\n{p.text}" for n, p in enumerate(found[:limit], 1))

    @server.tool(annotations=reads)
    async def read_passage(path: str, line: int, context: int = 20) -> str:
        """Read the lines around `line` (1-based) of a file in an indexed folder, each numbered:
        `path` as a search result gives it. Only files the index holds can be read."""
        context = max(0, min(context, MAX_CONTEXT_LINES))
        try:
            file = await asyncio.to_thread((await knowledge()).indexed_file, path)
        except AssistantError as exc:
            raise failed(exc) from exc
        try:
            data = await asyncio.to_thread(file.read_bytes)
        except OSError as exc:
            raise ToolError(f"Cannot read {file}: {exc.strerror}.") from exc
        if b"\x00" in data[:4096]:
            raise ToolError(f"{file} is not a text file (a PDF or DOCX): the passages search_folders returns "
                            "hold its text.")
        lines = data.decode("utf-8", errors="replace").splitlines()
        if not 1 <= line <= max(len(lines), 1):
            raise ToolError(f"{file} has {len(lines)} lines; line {line} is not one of them.")
        first, last = max(1, line - context), min(len(lines), line + context)
        width = len(str(last))
        numbered = [f"{n:>{width}} | {lines[n - 1]}" for n in range(first, last + 1)]
        return f"{file}:{first}-{last}\n" + "\n".join(numbered)

    @server.tool(annotations=reads)
    async def search_memory(query: str, limit: int = 10) -> str:
        """Search what the assistant remembers about the user (long-term memory): facts and
        preferences, most similar first, with their ids."""
        limit = max(1, min(limit, MAX_RESULTS))
        try:
            found = await engine.memories.search(query, limit)
        except AssistantError as exc:
            raise failed(exc) from exc
        found = [m for m in found if m["score"] >= engine.settings.memory_threshold]
        if not found:
            return "Nothing remembered about that."
        return "\n".join(f"#{m['id']} ({m['kind']}) {m['text']}" for m in found)

    if engine.settings.mcp_writes:
        @server.tool(annotations=writes)
        async def remember(text: str, kind: str = "fact") -> str:
            """Remember a lasting fact or preference about the user (long-term memory)."""
            try:
                saved = await engine.memories.add(text, kind)
            except AssistantError as exc:
                raise failed(exc) from exc
            return f"Remembered #{saved['id']}: {saved['text']}"

        @server.tool(annotations=writes)
        async def index_folder(path: str) -> str:
            """Index a folder (or index it again), so search_folders finds what it holds."""
            folder = Path(path).expanduser()
            if not folder.is_dir():
                raise ToolError(f"{path} is not a folder.")
            try:
                summary = await asyncio.to_thread((await knowledge()).index, folder)
            except AssistantError as exc:
                raise failed(exc) from exc
            return (f"Indexed {summary.folder}: {_counted(summary.files, 'file')} ({summary.indexed} new or "
                    f"changed), {_counted(summary.chunks_added, 'passage')} added, "
                    f"{_counted(summary.skipped, 'file')} skipped.")

    return server


def _counted(n: int, word: str) -> str:
    return f"{n:,} {word if n == 1 else word + 's'}"


def run(settings: Settings) -> None:
    """Serve over stdio until the client closes stdin."""
    engine = Engine(settings)
    server = build_server(engine)

    async def main() -> None:
        try:
            await server.run_stdio_async()
        finally:
            await engine.close()

    asyncio.run(main())
