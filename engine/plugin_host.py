"""The one plugin manager as the engine uses it.

The app builds the process's manager (`plugins.manager.get_plugin_manager`) and hands it to
`Engine(plugins=...)` (and `open_knowledge(plugins=...)`); backends, loaders, guardrails, tools,
commands and observers all ask that one, so a plugin disabled by one is disabled for all. When
none is handed in (tests, benchmarks, a library user), `default_plugins` builds it: the only place
in `engine` that reaches for `plugins.manager`, and only then (deferred: the built-in plugins
import `engine`).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from engine.config import Settings
from plugins.hookspecs import Command, PluginHost, Tool


def default_plugins(settings: Settings) -> PluginHost:
    """The built-in plugins, then (with `plugins` on) the installed ones."""
    from plugins.manager import get_plugin_manager

    return get_plugin_manager(load_entry_points=settings.plugins)


class EnginePlugins:
    """The manager, plus what the settings add on its first use: the MCP servers' tools
    (`mcp_servers`) and the OTLP exporter (`otlp_endpoint`). Blocking on first use (installed
    plugins are imported, MCP servers started): call from a worker thread."""

    def __init__(self, settings: Settings, folder: Path, manager: PluginHost | None = None) -> None:
        self.settings = settings
        self._folder = folder  # the data folder: the MCP servers' log goes in its logs/
        self._manager = manager
        self._extras = False
        self._lock = threading.Lock()
        self._mcp: Any = None  # engine.mcp.McpTools, when MCP servers are configured
        self._tools: dict[str, Tool] | None = None

    def manager(self) -> PluginHost:
        """The manager as built (for backend kinds and loaders: no MCP server is started)."""
        with self._lock:
            if self._manager is None:
                self._manager = default_plugins(self.settings)
            return self._manager

    def __call__(self) -> PluginHost:
        """The manager with the extras registered."""
        manager = self.manager()
        with self._lock:
            if not self._extras:
                if self.settings.mcp_servers and self._mcp is None:
                    from engine.mcp import McpTools

                    log_file = self._folder / "logs" / "mcp.log"
                    self._mcp = McpTools(self.settings.mcp_servers, log_file, manager.errors)
                    manager.register(self._mcp, name="mcp")
                if self.settings.otlp_endpoint:  # a ConfigError, every time, until it is installed
                    manager.export_traces(self.settings.otlp_endpoint)
                self._extras = True
        return manager

    def tools(self) -> dict[str, Tool]:
        """The tools the model may call: every plugin's, narrowed by the `tools` setting."""
        if self._tools is None:  # once: asking every plugin (and MCP server) per question is waste
            wanted = self.settings.tools
            self._tools = {n: t for n, t in self().tools().items() if wanted is None or n in wanted}
        return self._tools

    def commands(self) -> dict[str, Command]:
        """Slash commands, built in and the plugins'."""
        return self().commands()

    def close(self) -> None:
        """Stop the MCP servers (blocking)."""
        if self._mcp is not None:
            self._mcp.close()
