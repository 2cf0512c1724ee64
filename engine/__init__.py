"""The in-process engine of `assistant`: the public surface the TUI and the CLI use."""

from engine.config import Settings, load_settings
from engine.engine import Engine
from engine.errors import AssistantError
from engine.events import Event, Failed, Finished, Started, Timings, Token, Usage
from engine.request import AskOptions

__all__ = [
    "AskOptions",
    "AssistantError",
    "Engine",
    "Event",
    "Failed",
    "Finished",
    "Settings",
    "Started",
    "Timings",
    "Token",
    "Usage",
    "load_settings",
]
