"""The chat screen's keys and command palette entries, written once: each entry is a binding
(when it has a key), a footer label (when shown) and a palette command (when it has a title)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial

from textual.app import SystemCommand
from textual.binding import Binding
from textual.screen import Screen


@dataclass(frozen=True)
class ChatKey:
    action: str  # an action of the chat screen, "rate(1)"; "app.x" for the App's
    label: str = ""  # in the footer and the F1 panel
    key: str | None = None  # None: only in the palette
    show: bool = True  # in the footer (else only F1 and Ctrl+P: the footer has room for ~13)
    title: str | None = None  # in the command palette (Ctrl+P); None: not there
    help: str = ""
    elsewhere: str = ""  # how to reach it without a key: "/fork"
    # Reads the engine: pressed in the moment after launch before it is built, it waits for it
    # (AssistantApp.run_action); the others act at once.
    needs_engine: bool = True


# In footer order: the footer lists what fits at 160 columns; the rest are in F1 (keys) and Ctrl+P.
CHAT_KEYS = [
    ChatKey("app.toggle_keys", "Keys", "f1", needs_engine=False),  # first: on screen when the footer is cut
    ChatKey("stop", "Stop", "escape", title="Stop answer", help="Stop the answer in flight",
            needs_engine=False),
    ChatKey("new_chat", "New chat", "ctrl+n", title="New chat", help="Start a new conversation"),
    ChatKey("rate(1)", "👍", "ctrl+g", title="Thumbs up", help="Rate the selected or latest answer"),
    ChatKey("rate(-1)", "👎", "ctrl+b", title="Thumbs down", help="Rate the selected or latest answer"),
    ChatKey("select_answer(-1)", "Select answer", "alt+up", show=False, needs_engine=False),
    ChatKey("select_answer(1)", "Later answer", "alt+down", show=False, needs_engine=False),
    ChatKey("copy_answer", "Copy answer", "ctrl+o", title="Copy answer",
            help="Copy the selected or latest answer", needs_engine=False),
    ChatKey("open_source", "Open source", "ctrl+r", show=False, title="Open source",
            help="Open the first source of the selected or latest answer", needs_engine=False),
    ChatKey("folders", "Folders", "ctrl+f", title="Folders",
            help="Index folders, watch them, choose what this chat searches"),
    ChatKey("pick_backend", "Backend", "ctrl+l", show=False, title="Backend",
            help="Pick the backend and model of this conversation"),
    ChatKey("pick_model", "Model", "f9", title="Model",
            help="Load another local model; the current one is unloaded"),
    ChatKey("show_trace", "Trace", "ctrl+t", title="Trace",
            help="Why was it slow? The steps of the selected or latest answer"),
    ChatKey("stats", "Stats", "f3", title="Stats",
            help="Latency, speed, tokens, cost, thumbs, errors, with plots and alerts"),
    ChatKey("review", "Review", "f4", title="Review",
            help="Thumbs-down answers and refusals: write the better answer"),
    ChatKey("regenerate", "Regenerate", "f5", show=False, title="Regenerate",
            help="Answer the last question anew, not from the cache"),
    ChatKey("search", "Search", "f8", title="Search conversations",
            help="Find conversations by the words in them"),
    ChatKey("evals", "Evals", "f12", show=False, title="Evals",
            help="Eval runs: metrics, plot, cases, and two runs compared"),
    ChatKey("memory", "Memory", "f10", title="Memory",
            help="What the assistant remembers about you: edit, pin, forget, proposals"),
    ChatKey("toggle_sidebar", "Sidebar", "ctrl+s", show=False, title="Toggle sidebar",
            help="Show or hide past conversations", needs_engine=False),
    ChatKey("rename_conversation", "Rename", "f2", show=False, title="Rename conversation",
            help="Rename the current conversation"),
    ChatKey("incognito", title="Incognito", help="This conversation writes no long-term memory",
            elsewhere="/incognito"),
    ChatKey("fork", title="Fork conversation", help="Copy it up to the selected answer and go on there",
            elsewhere="/fork"),
    ChatKey("delete_conversation", title="Delete conversation", help="Delete the current conversation",
            elsewhere="Delete in the sidebar"),
]


def key_name(key: str) -> str:
    """How a key is written in help texts: "ctrl+n" is Ctrl+N, "escape" is Esc, "f3" is F3."""
    return "+".join({"escape": "Esc"}.get(part, part.upper() if len(part) == 1 else part.capitalize())
                    for part in key.split("+"))


def _name(action: str) -> str:
    return action.split("(", 1)[0]  # "rate(1)": rate


_WAITING = {_name(k.action) for k in CHAT_KEYS if k.needs_engine}


def waits_for_engine(action: object) -> bool:
    """Whether this chat screen action (a key's or a palette command's) needs the engine."""
    return isinstance(action, str) and _name(action) in _WAITING


def chat_bindings() -> list[Binding]:
    return [Binding(k.key, k.action, k.label, show=k.show) for k in CHAT_KEYS if k.key]


def palette_commands(screen: Screen) -> Iterator[SystemCommand]:
    """The palette entries, each running the same action as its key."""
    for k in CHAT_KEYS:
        if k.title is None:
            continue
        how = key_name(k.key) if k.key else k.elsewhere
        yield SystemCommand(k.title, f"{k.help} ({how})", partial(screen.app.run_action, k.action, screen))
