"""The app's structure, pinned: its layer rules over the source (ast, no extra tools), the chat
screen's keys written once, and the helpers every screen and command shares."""

from __future__ import annotations

import ast
from pathlib import Path

import click
import pytest

ROOT = Path(__file__).resolve().parent.parent

# The rooms inside Engine: the app reaches them through Engine (engine.history, engine.memories...).
ENGINE_ROOMS = {"engine.engine", "engine.answer", "engine.cache", "engine.answer_log", "engine.history",
                "engine.library", "engine.turn", "engine.toolloop", "engine.router"}


def _app_modules() -> dict[str, Path]:
    modules = {}
    for path in sorted((ROOT / "app").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _imports(path: Path) -> list[str]:
    """Every module `path` imports, also inside functions and `if TYPE_CHECKING` (a cycle there
    is still a cycle to the reader)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names += [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
    return names


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_the_app_never_imports_memory_or_the_rooms_inside_engine() -> None:
    crossing = [(module, name) for module, path in _app_modules().items() for name in _imports(path)
                if name.split(".")[0] == "memory"
                or any(name == room or name.startswith(room + ".") for room in ENGINE_ROOMS)]
    assert crossing == [], f"app modules importing memory or Engine's insides: {crossing}"


def test_app_modules_import_each_other_without_a_cycle() -> None:
    modules = _app_modules()
    graph = {module: {name for name in _imports(path) if name in modules and name != module}
             for module, path in modules.items()}
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_one() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_screens_reach_the_engine_one_way_and_no_module_is_huge() -> None:
    """Handed in (EngineScreen), never `self.app.engine`; each module one job, ~500 lines at most."""
    for module, path in _app_modules().items():
        text = path.read_text(encoding="utf-8")
        assert "app.engine" not in text, module
        assert text.count("\n") <= 500, f"{module}: {text.count(chr(10))} lines"


def test_cli_topic_modules_import_only_common() -> None:
    """No private cross-imports between the commands' modules: what they share is in common.py."""
    for module, path in _app_modules().items():
        if module.startswith("app.cli.") and module != "app.cli.common":
            others = {name for name in _imports(path)
                      if name.startswith("app.cli") and not name.startswith("app.cli.common")}
            assert others == set(), f"{module} imports {others}"


def test_every_chat_key_runs_an_action_of_the_screen() -> None:
    from app.screens.chat import ChatScreen
    from app.screens.chat_keys import CHAT_KEYS, key_name
    from app.tui import AssistantApp

    for key in CHAT_KEYS:
        namespace, _, action = key.action.rpartition(".")
        owner = {"": ChatScreen, "app": AssistantApp}[namespace]
        assert hasattr(owner, "action_" + action.split("(")[0]), key
        assert key.key or key.elsewhere, f"{key.title}: no key, and nothing says how else to reach it"
    keys = [k.key for k in CHAT_KEYS if k.key]
    assert len(keys) == len(set(keys)), "a key bound twice"
    assert [b.key for b in ChatScreen.BINDINGS] == keys  # the bindings are the table
    assert (key_name("ctrl+n"), key_name("escape"), key_name("f12")) == ("Ctrl+N", "Esc", "F12")


async def test_shows_errors_turns_our_error_into_a_notification_and_lets_others_through() -> None:
    from app.screens.base import shows_errors
    from engine import AssistantError

    class Node:
        def __init__(self) -> None:
            self.shown: list[tuple[str, str, str]] = []

        def notify(self, message: str, *, title: str = "", severity: str = "", timeout: float | None = None) -> None:
            self.shown.append((message, title, severity))

        @shows_errors("Memory")
        async def fails(self) -> str:
            raise AssistantError("The database is locked: close the other assistant.")

        @shows_errors()
        async def breaks(self) -> None:
            raise KeyError("a bug")

        @shows_errors()
        async def works(self) -> str:
            return "done"

    node = Node()
    assert await node.fails() is None
    assert node.shown == [("The database is locked: close the other assistant.", "Memory", "error")]
    assert await node.works() == "done"
    with pytest.raises(KeyError):  # a bug is not ours to dress up as a notification
        await node.breaks()


def test_user_errors_is_a_clean_exit_as_context_and_decorator() -> None:
    from app.cli.common import user_errors
    from engine import AssistantError

    @user_errors()
    def command() -> None:
        raise AssistantError("No such conversation: 7.")

    with pytest.raises(click.ClickException, match="No such conversation: 7."):
        command()
    with pytest.raises(click.ClickException, match="bad"), user_errors():
        raise AssistantError("bad")


def test_serve_and_web_share_their_listening_options() -> None:
    from app.cli.serve import serve, web

    def options(command: click.Command) -> dict[str, object]:
        found = {p.name: p for p in command.params if p.name in ("host", "port", "token")}
        return {"host": found["host"].default, "port": found["port"].default,
                "token": getattr(found["token"], "envvar", None)}

    assert options(serve) == {"host": "127.0.0.1", "port": 8000, "token": "ASSISTANT_SERVE_TOKEN"}
    assert options(web) == {"host": "127.0.0.1", "port": 8080, "token": "ASSISTANT_WEB_TOKEN"}
