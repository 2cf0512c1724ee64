"""Hook specifications: what a plugin of `assistant` may implement.

A plugin is a module or an object with functions marked `@hookimpl` whose names are hooks below.
Third-party plugins are found through the entry-point group `assistant.plugins`:

    # pyproject.toml of your plugin
    [project.entry-points."assistant.plugins"]
    epub = "assistant_epub"

    # assistant_epub.py
    from plugins.hookspecs import hookimpl

    @hookimpl
    def register_loaders(register):
        # "docx": one Line per paragraph, and a binary file (the scanner skips its NUL-byte check)
        register([".epub"], load_epub, "docx")

A plugin whose import fails or whose hook raises is reported by name and disabled; it never stops
the app (see `plugins/manager.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pluggy

from memory.documents import Loader
from memory.errors import AssistantError

PROJECT = "assistant"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

# How the chunker splits a loader's lines (see memory/chunker.py):
#   text      blank-line separated paragraphs
#   markdown  sections at `#` and setext headings, fenced code kept whole, then paragraphs
#   rst       sections at underlined (and overlined) titles, then paragraphs
#   code      top-level definitions (def, class, function, fn, func, ...), then blank lines
#   html      each Line is one text block
#   pdf       each page on its own, then paragraphs; the file is binary (no NUL-byte check)
#   docx      each Line is one paragraph; the file is binary (no NUL-byte check)
KINDS = frozenset({"text", "markdown", "rst", "code", "html", "pdf", "docx"})

# register(suffixes, loader, kind)
Register = Callable[[list[str], Loader, str], None]


@hookspec
def register_loaders(register: Register) -> None:
    """Register loaders that turn files into lines of text with their locations.

    Call `register(suffixes, loader, kind)` once per loader:

    - `suffixes`: file suffixes, lower-case with the dot (`[".md", ".markdown"]`). An entry
      without a dot is an exact file name, lower-case, for files without a suffix
      (`["makefile", "dockerfile"]`).
    - `loader`: `loader(path) -> list[Line]` (`memory.documents`). Number lines from 1; for paged
      formats set `Line.page` and number lines within the page. On a file it cannot read it must
      raise `LoaderError` with a short reason ("encrypted PDF"), never anything else: the reason
      is shown to the user next to the file name.
    - `kind`: one of `KINDS`; it tells the chunker how to split the lines.

    Plugins are called in registration order, built-ins first, so a later plugin that registers
    a suffix already taken overrides the built-in loader for it.
    """


@hookspec
def on_response_logged(response: dict, spans: list[dict]) -> None:
    """Observe an answer once its response row and trace are saved.

    `response` is the row as stored (see docs/schema.md, `responses`; its `id` included) and
    `spans` its trace (`spans` table: name, parent, start_ms, duration_ms, attrs). Called in a
    worker thread, never on the UI's event loop; an observer that raises is disabled and reported.
    With `log_content = false` neither holds any question or answer text.
    """


# register(name, check, rejects): `check(answer, json_schema) -> problem or None`.
RegisterValidator = Callable[[str, Callable[[str, dict | None], str | None], bool], None]


@hookspec
def register_validators(register: RegisterValidator) -> None:
    """Register checks run on every new answer, in order.

    Call `register(name, check, rejects)`: `check(answer, json_schema)` returns a short problem
    ("looks like a refusal") or None; `json_schema` is the schema the caller asked for, or None.
    A check that `rejects` turns the answer into a failure (never shown as valid); otherwise the
    answer stands and goes to the review queue.
    """


# register(name, find): `find(text) -> list of (start, end)` spans of text to hide.
RegisterGuardrail = Callable[[str, Callable[[str], list[tuple[int, int]]]], None]


@hookspec
def register_guardrails(register: RegisterGuardrail) -> None:
    """Register detectors of secrets and personal data.

    Call `register(name, find)` once per kind ("API keys", "email addresses"): `find(text)`
    returns the (start, end) character spans to hide. Before a prompt goes to an untrusted remote
    backend every span found is replaced by `[redacted NAME]` and the user is told what was
    removed; an answer in which a detector finds something is put in the review queue.
    """


class ToolError(AssistantError):
    """A tool could not do what was asked; the message goes back to the model (and the trace)."""


@dataclass(frozen=True)
class ToolContext:
    """What a tool may reach while it runs (in a worker thread)."""

    folders: list[Path] = field(default_factory=list)  # indexed folders this conversation uses
    search: Callable[[str], list[dict]] = lambda query: []  # passages: location, text
    recall: Callable[[str], list[dict]] = lambda query: []  # long-term memories: text, kind
    conversation_id: int | None = None


@dataclass(frozen=True)
class Tool:
    """A function the model may call during an answer.

    `parameters` is the JSON schema of its arguments (an object); `function(arguments, context)`
    returns text for the model, or raises `ToolError`. It runs in a worker thread, and the answer
    stops waiting for it after `timeout_s`. A tool with `side_effects` (it writes, sends, deletes)
    runs only once the user says yes, and never while untrusted text is in the context.
    """

    name: str
    description: str
    parameters: dict[str, Any]
    function: Callable[[dict, ToolContext], str]
    side_effects: bool = False
    timeout_s: float = 10.0


@hookspec
def register_tools(register: Callable[[Tool], None]) -> None:
    """Register tools the model may call: `register(Tool(...))` once per tool."""


@dataclass(frozen=True)
class Command:
    """A slash command of the chat app's prompt: `/name ARGS`.

    `run(args, context)` gets the text after the name and returns text to show (or None); it runs
    in a worker thread. `context` is a `CommandContext`.
    """

    name: str  # without the slash
    help: str
    run: Callable[[str, Any], str | None]


@dataclass(frozen=True)
class CommandContext:
    conversation_id: int | None
    tools: dict[str, Tool]  # the tools the model may call
    action: Callable[[str, str], None] = lambda name, args: None  # ask the app to do `name`


@hookspec
def register_commands(register: Callable[[Command], None]) -> None:
    """Register slash commands: `register(Command(...))` once per command."""


@hookspec
def register_backends(register: Callable[[str, Callable[[Any], Any]], None]) -> None:
    """Register kinds of backend: `register(kind, factory)`; `factory(provider)` gets a
    `[providers.NAME]` table (an `engine.config.Provider`, whose `kind` names this kind) and
    returns an object with the `engine.backends.base.Backend` protocol. Built in: `openai`
    (any OpenAI-compatible server)."""


class PluginHost(Protocol):
    """What the engine asks of the plugin manager (`plugins.manager.PluginManager`), which the app
    builds once and hands in: the engine imports only this module of `plugins`."""

    errors: list[str]  # "plugin NAME: what went wrong", for each plugin disabled
    hook: Any  # pluggy's hook relay: `hook.on_response_logged.get_hookimpls()`...

    def register(self, plugin: object, name: str | None = None) -> Any: ...

    def disable(self, plugin: object, reason: str) -> None:
        """Unregister a plugin that failed, and say why in `errors`."""

    def loaders(self) -> Any:
        """The loader registry (`plugins.manager.LoaderRegistry`)."""

    def tools(self) -> dict[str, Tool]: ...

    def commands(self) -> dict[str, Command]: ...

    def backend_kinds(self) -> dict[str, Callable[[Any], Any]]:
        """kind -> factory(provider settings) -> backend."""

    def export_traces(self, endpoint: str) -> None:
        """Register the OTLP exporter (`otlp_endpoint`)."""
