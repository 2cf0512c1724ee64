"""The app's structure, pinned: one way for screens to reach the engine, modules of one job, the
chat screen's keys written once, and the helpers every screen and command shares. (What the app
may import: tests/test_layers.py.)"""

from __future__ import annotations

import click
import pytest

from tests.test_layers import modules


def test_screens_reach_the_engine_one_way() -> None:
    """Handed in (EngineScreen), never `self.app.engine`."""
    for module, path in modules().items():
        if module.startswith("app"):
            assert "app.engine" not in path.read_text(encoding="utf-8"), module


def test_no_module_of_the_app_or_the_engine_is_huge() -> None:
    """Each module one job, ~500 lines at most."""
    lines = {module: path.read_text(encoding="utf-8").count("\n") for module, path in modules().items()
             if module.split(".")[0] in ("app", "engine")}
    assert {module: n for module, n in lines.items() if n > 500} == {}


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
