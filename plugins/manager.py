"""The plugin manager: built-in plugins first, then third-party ones from entry points.

A plugin that fails (its import raises, or its hook raises or registers nonsense) is disabled and
reported as "plugin NAME: what went wrong" in `PluginManager.errors`; the app goes on without it.

One manager per process: the app builds it (`get_plugin_manager`) and hands it to the engine, whose
backends, loaders, guardrails, tools, commands and observers all ask that one; so a plugin disabled
by one of them is disabled for all. The engine sees it as a `plugins.hookspecs.PluginHost`.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import pluggy

from memory.documents import Loader
from plugins import hookspecs
from plugins.hookspecs import KINDS, Command, Tool

ENTRY_POINT_GROUP = "assistant.plugins"
BUILTIN_PLUGINS = ["plugins.loaders", "plugins.guardrails", "plugins.tools", "plugins.commands",
                   "plugins.backends"]

log = logging.getLogger(__name__)


class PluginManager(pluggy.PluginManager):
    """pluggy's manager plus the failures of plugins that were disabled, for the user to see."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        self.add_hookspecs(hookspecs)
        self.errors: list[str] = []

    def disable(self, plugin: object, reason: str) -> None:
        name = plugin_name(self, plugin)
        message = f"plugin {name}: {reason}"
        log.warning("%s (disabled)", message)
        self.errors.append(message)
        if self.is_registered(plugin):
            self.unregister(plugin)
        self.set_blocked(name)  # so a later load of the same entry point does not bring it back

    # what the engine asks (plugins.hookspecs.PluginHost) ---------------------------------------

    def loaders(self) -> LoaderRegistry:
        return loader_registry(self)

    def tools(self) -> dict[str, Tool]:
        return tool_registry(self)

    def commands(self) -> dict[str, Command]:
        return command_registry(self)

    def backend_kinds(self) -> dict[str, Callable[[Any], Any]]:
        return backend_registry(self)

    def export_traces(self, endpoint: str) -> None:
        """Send each answer's trace to an OpenTelemetry collector (`otlp_endpoint`); a ConfigError
        when the exporter is not installed."""
        from plugins.otel import OtlpExporter

        self.register(OtlpExporter(endpoint), name="otel")


def plugin_name(pm: pluggy.PluginManager, plugin: object) -> str:
    name = pm.get_name(plugin)
    if name is None or name == str(id(plugin)):  # pluggy's default name for anonymous objects
        name = getattr(plugin, "__name__", None) or type(plugin).__name__
    return name


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def get_plugin_manager(load_entry_points: bool = True) -> PluginManager:
    """The built-in plugins, then (unless `load_entry_points` is false) the installed ones."""
    pm = PluginManager()
    for module_name in BUILTIN_PLUGINS:
        # Not guarded: a built-in plugin that fails to import is our bug and must fail the tests.
        pm.register(importlib.import_module(module_name), name=module_name)
    if load_entry_points:
        _load_entry_points(pm)
    return pm


def _load_entry_points(pm: PluginManager) -> None:
    # One entry point at a time: pluggy's loader stops at the first plugin that fails to import.
    names = sorted({ep.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)})
    for name in names:
        try:
            pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP, name=name)
        except Exception as exc:  # any error in someone else's import, or a hook that fails validation
            message = f"plugin {name}: could not be loaded: {_short(exc)}"
            log.warning("%s (disabled)", message)
            pm.errors.append(message)
            pm.set_blocked(name)


class LoaderRegistry:
    """Which loader reads a file, and which kind of chunking its lines get."""

    def __init__(self) -> None:
        self._by_suffix: dict[str, tuple[Loader, str]] = {}
        self._by_name: dict[str, tuple[Loader, str]] = {}
        self.errors: list[str] = []

    def add(self, suffixes: list[str], loader: Loader, kind: str) -> None:
        """Register `loader` for `suffixes` (".md") and exact lower-case names ("makefile")."""
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r} (use one of {', '.join(sorted(KINDS))})")
        if not callable(loader):
            raise TypeError(f"loader {loader!r} is not callable")
        if isinstance(suffixes, str):
            raise TypeError(f"suffixes must be a list of strings, not the string {suffixes!r}")
        for suffix in suffixes:
            if not isinstance(suffix, str) or not suffix.strip(". "):
                raise ValueError(f"bad suffix {suffix!r}")
            key = suffix.lower()
            table = self._by_suffix if key.startswith(".") else self._by_name
            table[key] = (loader, kind)

    def for_path(self, path: Path | str) -> tuple[Loader, str] | None:
        """The (loader, kind) for a file, by its suffix, else by its name, else None."""
        name = Path(path).name.lower()
        suffix = Path(name).suffix
        if suffix and suffix in self._by_suffix:
            return self._by_suffix[suffix]
        if name in self._by_name:
            return self._by_name[name]
        # "Dockerfile.dev", "Makefile.am", "README.old": the name before the first dot decides.
        return self._by_name.get(name.split(".", 1)[0]) if "." in name.lstrip(".") else None

    def kind_of(self, path: Path | str) -> str | None:
        """The chunking kind for a file, or None when no loader reads it (for `memory.scanner`)."""
        found = self.for_path(path)
        return found[1] if found else None

    @property
    def suffixes(self) -> frozenset[str]:
        """Every registered suffix (".md") and exact file name ("makefile")."""
        return frozenset(self._by_suffix) | frozenset(self._by_name)


def loader_registry(pm: pluggy.PluginManager) -> LoaderRegistry:
    """Call every plugin's `register_loaders`, built-ins first, so later plugins override.

    Each plugin's registrations are applied only if its hook returns normally: a plugin that
    raises half-way leaves nothing behind and is disabled.
    """
    registry = LoaderRegistry()
    # get_hookimpls() lists in registration order (pluggy calls them in reverse); tryfirst and
    # trylast move an implementation to the end and the start, so "first" wins and is applied last.
    for impl in pm.hook.register_loaders.get_hookimpls():
        if impl.hookwrapper or impl.wrapper:
            continue  # wrappers wrap calls, they register nothing themselves
        pending: list[tuple[list[str], Loader, str]] = []

        def register(suffixes: list[str], loader: Loader, kind: str, _pending=pending) -> None:
            probe = LoaderRegistry()
            probe.add(suffixes, loader, kind)  # validate now, so the error names this plugin
            _pending.append((list(suffixes), loader, kind))

        try:
            impl.function(**{name: register for name in impl.argnames})
        except Exception as exc:  # someone else's code: report it, never crash the app
            if isinstance(pm, PluginManager):
                pm.disable(impl.plugin, f"register_loaders failed: {_short(exc)}")
            else:
                registry.errors.append(
                    f"plugin {plugin_name(pm, impl.plugin)}: register_loaders failed: {_short(exc)}"
                )
            continue
        for suffixes, loader, kind in pending:
            registry.add(suffixes, loader, kind)
    if isinstance(pm, PluginManager):
        registry.errors[:0] = pm.errors
    return registry


def collect(pm: PluginManager, hook: str, check: Callable[..., Any]) -> list[Any]:
    """Call every plugin's `hook` with a `register` callback; `check(*args)` validates each
    registration (raising on nonsense) and returns what to keep. A plugin that raises, or registers
    nonsense, is disabled and keeps nothing; later plugins override earlier ones by name."""
    found: list[Any] = []
    for impl in getattr(pm.hook, hook).get_hookimpls():
        if impl.hookwrapper or impl.wrapper:
            continue
        pending: list[Any] = []

        def register(*args: Any, _pending: list[Any] = pending) -> None:
            _pending.append(check(*args))

        try:
            impl.function(**{name: register for name in impl.argnames})
        except Exception as exc:  # someone else's code: report it, never crash the app
            pm.disable(impl.plugin, f"{hook} failed: {_short(exc)}")
            continue
        found.extend(pending)
    return found


def tool_registry(pm: PluginManager) -> dict[str, Tool]:
    def check(tool: Tool) -> Tool:
        if not isinstance(tool, Tool) or not tool.name.isidentifier() or not callable(tool.function):
            raise TypeError(f"register_tools needs a plugins.hookspecs.Tool with a name and a function, "
                            f"not {tool!r}")
        if tool.parameters.get("type") != "object":
            raise ValueError(f"tool {tool.name}: parameters must be a JSON schema of type object")
        return tool

    return {t.name: t for t in collect(pm, "register_tools", check)}


def command_registry(pm: PluginManager) -> dict[str, Command]:
    def check(command: Command) -> Command:
        if not isinstance(command, Command) or not command.name.replace("-", "_").isidentifier():
            raise TypeError(f"register_commands needs a plugins.hookspecs.Command named like `word`, "
                            f"not {command!r}")
        return command

    return {c.name: c for c in collect(pm, "register_commands", check)}


def backend_registry(pm: PluginManager) -> dict[str, Callable[[Any], Any]]:
    def check(kind: str, factory: Callable[[Any], Any]) -> tuple[str, Callable[[Any], Any]]:
        if not isinstance(kind, str) or not kind or not callable(factory):
            raise TypeError(f"register_backends needs (kind, factory), not ({kind!r}, {factory!r})")
        return kind, factory

    return dict(collect(pm, "register_backends", check))


def describe(pm: PluginManager) -> list[dict]:
    """Each plugin: its name, where it comes from, the hooks it implements and what it registers."""
    sources = {id(plugin): f"{dist.project_name} {dist.version}"
               for plugin, dist in pm.list_plugin_distinfo()}
    rows = []
    for plugin in pm.get_plugins():
        hooks = sorted(caller.name for caller in pm.get_hookcallers(plugin) or [])
        registers = {hook.removeprefix("register_"): _registrations(pm, plugin, hook)
                     for hook in ("register_loaders", "register_guardrails", "register_validators",
                                  "register_tools", "register_commands", "register_backends")
                     if hook in hooks}
        rows.append({"name": plugin_name(pm, plugin), "source": sources.get(id(plugin), "built-in"),
                     "hooks": hooks, "registers": registers})
    return rows


def _registrations(pm: PluginManager, plugin: object, hook: str) -> list[str]:
    """What one plugin registers through one hook: loaders' suffixes, or the names given."""
    found: list[str] = []

    def register(first: object, *rest: object) -> None:
        if isinstance(first, Tool | Command):
            first = ("/" if isinstance(first, Command) else "") + first.name
        found.append(", ".join(first) if isinstance(first, list) else str(first))

    impl = next(i for i in getattr(pm.hook, hook).get_hookimpls() if i.plugin is plugin)
    try:
        impl.function(register=register)
    except Exception as exc:  # shown, not raised: the listing must work for broken plugins too
        found.append(f"(failed: {_short(exc)})")
    return found
