"""One plugin manager per engine (the process's, when the app hands it in): what one part of the
engine learns about a plugin (it failed, it is disabled) every other part knows too."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

import plugins.manager
from engine import Engine, Finished, Settings
from plugins.hookspecs import hookimpl


def _flaky_plugin() -> types.ModuleType:
    """Reads `.flaky` files, and raises in `on_response_logged`."""
    module = types.ModuleType("flaky_plugin")

    @hookimpl
    def register_loaders(register):  # noqa: ANN001, ANN202 - the hook's own signature
        register([".flaky"], lambda path: [], "text")

    @hookimpl
    def on_response_logged(response, spans):  # noqa: ANN001, ANN202
        raise RuntimeError("boom")

    module.register_loaders = register_loaders  # type: ignore[attr-defined]
    module.on_response_logged = on_response_logged  # type: ignore[attr-defined]
    return module


async def test_a_plugin_disabled_after_failing_is_disabled_everywhere(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It fails as an observer of the first answer; then the folders' loaders no longer know its
    files. (With a manager per part, as before, its loader stayed live in the indexer's own.)"""
    monkeypatch.setitem(sys.modules, "flaky_plugin", _flaky_plugin())
    monkeypatch.setattr(plugins.manager, "BUILTIN_PLUGINS", [*plugins.manager.BUILTIN_PLUGINS, "flaky_plugin"])
    engine = Engine(settings.replace(max_tokens=8))
    events = [event async for event in engine.ask("Say hi.")]
    assert isinstance(events[-1], Finished)
    knowledge = await engine.knowledge()
    await engine.close()  # waits for the observers

    manager = engine.plugins()
    assert manager.errors == ["plugin flaky_plugin: on_response_logged raised RuntimeError: boom"]
    assert not manager.has_plugin("flaky_plugin")
    assert knowledge.loaders.for_path(Path("notes.flaky")) is None
    assert knowledge.loaders.for_path(Path("notes.md")) is not None  # the built-ins are still there


def test_the_app_hands_in_the_one_manager(settings: Settings) -> None:
    manager = plugins.manager.get_plugin_manager(load_entry_points=False)
    engine = Engine(settings, plugins=manager)
    assert engine.plugins() is manager
    assert engine.plugin_host.manager() is manager


def test_a_plugin_backend_that_is_not_a_backend_is_refused_by_name(settings: Settings) -> None:
    """The engine asks every backend the same questions (remote? trusted? endpoint?), answered by
    the Backend base class's defaults: an object without them is refused when the engine is built."""
    from engine.config import Provider
    from engine.errors import ConfigError

    class Legacy:  # the old protocol: load, fit, stream, and nothing else
        def __init__(self, provider: Provider) -> None:
            self.name, self.model_name, self.n_ctx = provider.name, provider.model, 4096

    manager = plugins.manager.get_plugin_manager(load_entry_points=False)

    class Kinds:
        @hookimpl
        def register_backends(self, register):  # noqa: ANN001, ANN202
            register("legacy", Legacy)

    manager.register(Kinds(), name="legacy-kinds")
    old = Provider(name="old", kind="legacy", base_url="http://127.0.0.1:9/v1", model="m")
    with pytest.raises(ConfigError, match=r"Provider 'old'.*made a Legacy, not an engine\.backends\.base\.Backend"):
        Engine(settings.replace(providers={"old": old}), plugins=manager)
