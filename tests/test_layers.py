"""The layers, read from the source (ast, no tools): what may import what.

    app -> engine -> memory;  plugins/hookspecs.py at the bottom, beside memory

A module-level import is one Python runs when the module is imported (in `if`/`try` blocks too,
not under `if TYPE_CHECKING:`); a deferred one sits inside a function. Both count for who may
import a library or a layer; cycles are checked among module-level imports. An import under
`if TYPE_CHECKING:` (annotations only) never runs; the app's rules count it too (a reader still
follows it).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("app", "engine", "memory", "plugins")


@dataclass(frozen=True)
class Import:
    importer: str  # the module that imports, "engine.answer"
    target: str  # what it imports: a module of ours when it is one ("engine.prompts"), else the name
    line: int
    deferred: bool  # inside a function (runs when called, not at import)
    annotations_only: bool = False  # under `if TYPE_CHECKING:`: never runs
    name: str = ""  # the name a `from X import name` takes ("" for `import X`)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {_module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))
            if "examples" not in p.relative_to(ROOT).parts}  # plugins/examples: separate distributions


def _imports_of(name: str, path: Path) -> list[Import]:
    ours = modules()
    found: list[Import] = []
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]

    def visit(body: list[ast.stmt], deferred: bool, typing: bool) -> None:
        for node in body:
            if isinstance(node, ast.Import):
                found.extend(Import(name, alias.name, node.lineno, deferred, typing) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    found.append(Import(name, full if full in ours else base, node.lineno, deferred, typing,
                                        alias.name))
            elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.body, deferred, True)
                visit(node.orelse, deferred, typing)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                visit(node.body, True, typing)  # type: ignore[arg-type]
            else:
                for field in ("body", "orelse", "finalbody", "handlers"):
                    inner = getattr(node, field, None)
                    if isinstance(inner, list):
                        visit([n for n in inner if isinstance(n, ast.stmt | ast.excepthandler)], deferred, typing)

    visit(ast.parse(path.read_text(encoding="utf-8")).body, False, False)
    return found


@cache
def all_imports(annotations: bool = False) -> tuple[Import, ...]:
    """Every import that runs, at import time or in a function; with `annotations`, also those
    under `if TYPE_CHECKING:`."""
    return tuple(i for name, path in modules().items() for i in _imports_of(name, path)
                 if annotations or not i.annotations_only)


def _layer(module: str) -> str:
    return module.split(".")[0]


def _is(target: str, name: str) -> bool:
    return target == name or target.startswith(name + ".")


def test_the_graph_sees_the_imports_we_know_are_there() -> None:
    """The reader itself: a few imports of each kind, so a broken reader cannot pass the rules."""
    seen = {(i.importer, i.target, i.deferred) for i in all_imports()}
    assert ("engine.engine", "engine.answer", False) in seen
    assert ("memory.vectors", "chromadb", True) in seen or ("memory.vectors", "chromadb", False) in seen
    assert ("engine.plugin_host", "plugins.manager", True) in seen  # deferred, in a function
    assert len(modules()) > 50
    typed = {(i.importer, i.target, i.name) for i in all_imports(annotations=True) if i.annotations_only}
    assert ("engine", "engine.registry", "Registry") in typed  # engine/__init__.py, for type checkers
    assert not any(i.annotations_only for i in all_imports())
    named = {(i.importer, i.target, i.name) for i in all_imports()}
    assert ("app.cli.common", "engine", "load_settings") in named
    assert ("app.cli.ask", "app.cli.common", "user_errors") in named


def test_no_import_cycles_at_module_level() -> None:
    graph: dict[str, set[str]] = {name: set() for name in modules()}
    for i in all_imports():
        # A package's own __init__ is imported before its modules anyway: not an edge back.
        if not i.deferred and i.target in graph and i.target != i.importer \
                and not i.importer.startswith(i.target + "."):
            graph[i.importer].add(i.target)
    cycles = _cycles(graph)
    assert not cycles, f"import cycles: {cycles}"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_memory_imports_nothing_above_it() -> None:
    """memory is the bottom layer: not engine, not app, not the plugin manager (which imports the
    built-in plugins, which import engine)."""
    wrong = [i for i in all_imports() if _layer(i.importer) == "memory"
             and (_layer(i.target) in ("engine", "app") or _is(i.target, "plugins.manager"))]
    assert not wrong, wrong


# The one exception to "engine imports only plugins.hookspecs": building the plugin manager when
# the app hands none in (tests, benchmarks, a library user), deferred to that moment.
ENGINE_MAY_IMPORT_FROM_PLUGINS = {"plugins.hookspecs"}
ENGINE_BUILDS_THE_DEFAULT_MANAGER = {("engine.plugin_host", "plugins.manager")}


def test_engine_imports_only_the_hookspecs_of_plugins() -> None:
    wrong = [i for i in all_imports() if _layer(i.importer) == "engine" and _layer(i.target) == "plugins"
             and i.target not in ENGINE_MAY_IMPORT_FROM_PLUGINS
             and not (i.deferred and (i.importer, i.target) in ENGINE_BUILDS_THE_DEFAULT_MANAGER)]
    assert not wrong, wrong


def test_nothing_below_app_imports_app() -> None:
    wrong = [i for i in all_imports() if _layer(i.importer) != "app" and _layer(i.target) == "app"]
    assert not wrong, wrong


# Each third-party library is imported by the modules that own it, and translated into our error
# tree there. Listed by hand: a new importer is a decision, made here.
OWNERS = {
    # the local backend's modules, and state_cache: its RAM cache subclass
    "llama_cpp": {"engine.backends.local", "engine.backends.local_loading", "engine.backends.local_states",
                  "engine.backends.llama_runtime", "engine.backends.state_cache"},
    "chromadb": {"memory.vectors"},
    "httpx": {"engine.backends.openai_compat", "engine.download"},
    "sqlite3": {"memory.store", "engine.doctor"},  # doctor: only sqlite3.sqlite_version
    "numpy": {"memory.vectors", "engine.cache", "engine.backends.state_cache", "engine.backends.disk_states",
              "memory.light_encoder"},
    "watchfiles": {"engine.knowledge"},
    # nltk's import costs ~1 s of CPU: only scoring evals (ROUGE) pays it, never an answer.
    "nltk": {"engine.evals.metrics"},
    "rouge_score": {"engine.evals.metrics"},
    "snowballstemmer": {"engine.attribution"},
}


def test_each_library_is_imported_only_by_its_owners() -> None:
    wrong = {library: sorted({f"{i.importer}:{i.line}" for i in all_imports()
                              if _is(i.target, library) and i.importer not in owners})
             for library, owners in OWNERS.items()}
    assert not any(wrong.values()), {k: v for k, v in wrong.items() if v}


# --- the app's rules -----------------------------------------------------------------------------
# The app uses `engine` through its `__init__` (the names in its `__all__`, tests/test_public_surface.py),
# never a module inside it, and never `memory`. Of `plugins`, it builds the one manager
# (plugins.manager) and writes slash commands (plugins.hookspecs). Deferred imports and those for
# annotations count: a module imported in a function is still reached into.
APP_MAY_IMPORT_FROM_PLUGINS = {"plugins.hookspecs", "plugins.manager"}


def _engine_surface() -> set[str]:
    tree = ast.parse((ROOT / "engine" / "__init__.py").read_text(encoding="utf-8"))
    exported = next(node.value for node in tree.body if isinstance(node, ast.Assign)
                    and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets))
    return set(ast.literal_eval(exported))


def _app_imports() -> list[Import]:
    return [i for i in all_imports(annotations=True) if _layer(i.importer) == "app"]


def test_the_app_imports_engine_only_through_its_public_surface() -> None:
    surface = _engine_surface()
    assert {"Engine", "AssistantError", "read_gguf"} <= surface
    wrong = [f"{i.importer}:{i.line} {i.target} {i.name}".rstrip() for i in _app_imports()
             if _layer(i.target) == "engine" and (i.target != "engine" or i.name and i.name not in surface)]
    assert not wrong, f"the app reaches inside engine (import from `engine`, names in its __all__): {wrong}"


def test_the_app_never_imports_memory_or_the_insides_of_plugins() -> None:
    wrong = [f"{i.importer}:{i.line} {i.target}" for i in _app_imports()
             if _layer(i.target) == "memory"
             or (_layer(i.target) == "plugins" and i.target not in APP_MAY_IMPORT_FROM_PLUGINS)]
    assert not wrong, wrong


def test_app_modules_import_each_other_without_a_cycle() -> None:
    """Deferred imports too: a cycle through a function is still a cycle to the reader."""
    app = {name for name in modules() if _layer(name) == "app"}
    graph: dict[str, set[str]] = {name: set() for name in app}
    for i in _app_imports():
        if i.target in app and i.target != i.importer:
            graph[i.importer].add(i.target)
    assert _cycles(graph) == []


def test_cli_topic_modules_import_only_common() -> None:
    """No private cross-imports between the commands' modules: what they share is in common.py."""
    wrong = [f"{i.importer}:{i.line} {i.target}" for i in _app_imports()
             if i.importer.startswith("app.cli.") and i.importer != "app.cli.common"
             and _is(i.target, "app.cli") and not _is(i.target, "app.cli.common")]
    assert not wrong, wrong
