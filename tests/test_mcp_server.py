"""`assistant mcp` through the official `mcp` client over stdio: the real process, the real index
and memory of a temporary data folder."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.serve_process import FACT, MEMORY, ROOT, prepare_home


class McpClient:
    """An `mcp` ClientSession to `assistant mcp`, on an event loop of its own (anyio's scopes must
    close in the task that opened them), called synchronously from the tests."""

    def __init__(self, home: Path, **env: str) -> None:
        from mcp.client.stdio import StdioServerParameters

        self.params = StdioServerParameters(
            command=sys.executable, args=["-m", "app", "mcp"], cwd=str(ROOT),
            env={"PATH": os.environ["PATH"], "HOME": str(home), "ASSISTANT_HOME": str(home),
                 "HF_HUB_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False", **env})
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.stop = asyncio.Event()
        self.session: Any = None

    def __enter__(self) -> McpClient:
        self.thread.start()
        self.ready: asyncio.Future[None] = self.loop.create_future()
        self.task = asyncio.run_coroutine_threadsafe(self._serve(), self.loop)
        asyncio.run_coroutine_threadsafe(asyncio.wait_for(asyncio.shield(self.ready), 60), self.loop).result(70)
        return self

    async def _serve(self) -> None:
        from mcp.client.session import ClientSession
        from mcp.client.stdio import stdio_client

        try:
            async with stdio_client(self.params) as (read, write), ClientSession(read, write) as session:
                await session.initialize()
                self.session = session
                self.ready.set_result(None)
                await self.stop.wait()
        except Exception as exc:
            if not self.ready.done():
                self.ready.set_exception(exc)
            raise

    def __exit__(self, *exc: Any) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.task.result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def _run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(120)

    def tools(self) -> list[Any]:
        return self._run(self.session.list_tools()).tools

    def call(self, name: str, **arguments: Any) -> tuple[bool, str]:
        result = self._run(self.session.call_tool(name, arguments))
        return result.is_error, "\n".join(getattr(part, "text", "") for part in result.content)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("mcp")
    home, notes = root / "home", root / "notes"
    notes.mkdir()
    (notes / ".env").write_text("AWS_SECRET_ACCESS_KEY=do-not-read\n")  # hidden: the index skips it
    (notes / "swapped.md").write_text("An ordinary note that becomes a link later.\n")
    (root / "outside.txt").write_text("outside the folder\n")
    prepare_home(home, notes)
    # After indexing, a file the index holds is replaced by a link out of the folder.
    (notes / "swapped.md").unlink()
    (notes / "swapped.md").symlink_to(root / "outside.txt")
    return home, notes


@pytest.fixture(scope="module")
def writer(data: tuple[Path, Path]):
    with McpClient(data[0], ASSISTANT_MCP_WRITES="1") as client:
        yield client


def test_read_only_tools_by_default(data: tuple[Path, Path]) -> None:
    with McpClient(data[0]) as client:
        tools = {t.name: t for t in client.tools()}
        assert set(tools) == {"search_folders", "read_passage", "search_memory"}
        assert all(t.annotations.read_only_hint for t in tools.values())
        error, text = client.call("remember", text="I like tea.")
        assert error and "remember" in text


def test_writes_are_offered_behind_the_switch(writer: McpClient) -> None:
    tools = {t.name: t for t in writer.tools()}
    assert set(tools) == {"search_folders", "read_passage", "search_memory", "remember", "index_folder"}
    assert not tools["remember"].annotations.read_only_hint


def test_search_then_read_around_the_passage(writer: McpClient, data: tuple[Path, Path]) -> None:
    error, text = writer.call("search_folders", query="Where does my cat Miso sleep?")
    assert not error and FACT in text
    location = text.splitlines()[0].removeprefix("[1] ")
    path = location.rsplit(":", 1)[0]
    assert path == str(data[1] / "pets.md")
    error, lines = writer.call("read_passage", path=path, line=5, context=1)
    assert not error
    assert lines.splitlines() == [f"{path}:4-6", "4 | ", f"5 | {FACT}", "6 | "]
    error, relative = writer.call("read_passage", path="pets.md", line=1, context=0)
    assert not error and relative.endswith("1 | # Pets")


@pytest.mark.parametrize(("path", "words"), [
    ("/etc/passwd", "not inside an indexed folder"),
    ("../outside.txt", "not inside an indexed folder"),
    (".env", "not in the index"),
    ("swapped.md", "leads outside its indexed folder"),
    ("", "No path was given"),
])
def test_read_passage_reads_only_what_the_index_holds(writer: McpClient, path: str, words: str) -> None:
    error, text = writer.call("read_passage", path=path, line=1)
    assert error and words in text
    assert "do-not-read" not in text and "outside the folder" not in text


def test_memory_search_and_remember(writer: McpClient) -> None:
    error, text = writer.call("search_memory", query="What is my favourite colour?")
    assert not error and MEMORY in text
    error, text = writer.call("remember", text="The user lives in Lisbon.")
    assert not error and text.startswith("Remembered #")
    error, text = writer.call("search_memory", query="Where does the user live?")
    assert "The user lives in Lisbon." in text


def test_index_folder_then_search_finds_it(writer: McpClient, tmp_path: Path) -> None:
    folder = tmp_path / "recipes"
    folder.mkdir()
    (folder / "cake.md").write_text("The lemon cake needs three eggs and a cup of sugar.\n")
    error, text = writer.call("index_folder", path=str(folder))
    assert not error and "1 file (1 new or changed), 1 passage added" in text
    error, text = writer.call("search_folders", query="How many eggs does the lemon cake need?")
    assert not error and "cake.md:1" in text
    error, text = writer.call("index_folder", path=str(tmp_path / "missing"))
    assert error and "is not a folder" in text
