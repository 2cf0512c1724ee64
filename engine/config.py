"""Settings: defaults, then the TOML config file, then `ASSISTANT_*` environment variables.

Every field is documented here; `docs/configuration.md` lists them for users.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import ConfigError
from engine.paths import config_file
from engine.secrets import remember_headers

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful assistant running locally on the user's own computer. "
    "Answer clearly and concisely."
)


# Why the router may try the next backend; `fallback_on` picks which of these apply.
FALLBACK_REASONS = (
    "model_missing",  # no local model file
    "load_failed",  # llama.cpp refused the file, or it is damaged
    "out_of_memory",  # not enough memory to load the model
    "context_overflow",  # the conversation does not fit the local context window whole
    "slow_first_token",  # the first token took longer than first_token_deadline_s
    "error",  # the backend failed before its first token (HTTP error, timeout, crash)
)


def _doc(text: str, default: Any, shown: str | None = None) -> Any:
    """A setting with its documentation; `shown` replaces the default in the docs' tables."""
    return field(default=default, metadata={"doc": text, "shown": shown})


@dataclass(frozen=True)
class Provider:
    """An OpenAI-compatible server: a cloud API or the user's own (vLLM, llama.cpp, Ollama)."""

    name: str = _doc("The table's name; used in `backends` and shown with every answer.", "")
    kind: str = _doc(
        "The kind of server: `openai` (any OpenAI-compatible API), or a kind a plugin registers.", "openai"
    )
    base_url: str = _doc("The API root, e.g. `https://api.openai.com/v1` or `http://gpu-box:8000/v1`.", "")
    model: str = _doc("The model to ask, as the server names it.", "")
    api_key_env: str | None = _doc("Environment variable holding the API key.", None)
    api_key_keyring: str | None = _doc(
        "OS keyring service holding the key (user name: the provider's name).", None
    )
    trusted: bool = _doc(
        "A server on your own network: private folders' passages may be sent to it.", False
    )
    context_window: int = _doc("The model's context window in tokens.", 32768)
    connect_timeout_s: float = _doc("Seconds to connect.", 5.0)
    read_timeout_s: float = _doc("Seconds of silence allowed while waiting for data.", 60.0)
    total_timeout_s: float = _doc("Seconds for a whole answer.", 300.0)
    max_retries: int = _doc("Retries on connect errors, 429 and 5xx, before the first token.", 2)
    backoff_s: float = _doc("First retry waits up to this (full jitter, doubling each time).", 0.1)
    max_retry_wait_s: float = _doc("A `Retry-After` longer than this fails over instead of waiting.", 20.0)
    requests_per_minute: float | None = _doc("Client-side rate limit. Unset: none.", None)
    headers: dict[str, str] = field(
        default_factory=dict, metadata={"doc": "Extra HTTP headers sent with every request."}
    )

    def __post_init__(self) -> None:
        # A header may carry a key (x-api-key) the config file would refuse as `api_key`: its value
        # is masked wherever a server's echo of it would be written or shown.
        if isinstance(self.headers, dict):
            remember_headers({k: v for k, v in self.headers.items() if isinstance(v, str)})


@dataclass(frozen=True)
class Price:
    input_per_mtok: float = _doc("USD per million prompt tokens.", 0.0)
    output_per_mtok: float = _doc("USD per million answer tokens.", 0.0)
    since: str = _doc("The date (YYYY-MM-DD) the price holds from.", "1970-01-01")


@dataclass(frozen=True)
class McpServer:
    """An MCP server whose tools the model may call, started over stdio."""

    command: str = _doc("The program that runs the server, e.g. `npx` or `uvx`.", "")
    args: tuple[str, ...] = _doc("Its arguments.", ())
    env: dict[str, str] = field(default_factory=dict, metadata={
        "shown": "{}",
        "doc": "Environment variables for it: it gets none of yours "
               "(only PATH, HOME, USER, LOGNAME, SHELL, TERM)."})
    cwd: str | None = _doc("Its working folder.", None)
    tools: tuple[str, ...] | None = _doc("Only these of its tools. Unset: all.", None)
    side_effects: bool = _doc(
        "Treat its tools as acting (asked first, never with untrusted text in context) unless the server "
        "marks them read-only. false: trust its tools to only read.", True
    )
    timeout_s: float = _doc("Seconds a call may take.", 30.0)


@dataclass(frozen=True)
class Settings:
    model: str | None = _doc(
        "GGUF model: a file path, a name registered with `assistant models`, or the name of a file in "
        "`models_dir`. Unset: the default chosen with `assistant models use`, else the embedded "
        "SmolLM2-135M-Instruct.",
        None,
    )
    models_dir: str | None = _doc("A folder of GGUF files; each can be chosen by name.", None)
    n_ctx: int = _doc("Context window in tokens (prompt + answer).", 4096)
    n_gpu_layers: int | None = _doc(
        "Layers offloaded to the GPU (-1: all). Unset: as many as fit in free GPU memory (see `auto_fit`); "
        "0 without a GPU build of llama.cpp.",
        None,
    )
    auto_fit: bool = _doc(
        "Fit the model to this machine: choose `n_gpu_layers` (when unset) from free GPU memory, and "
        "lower `n_ctx` when RAM is short, instead of failing; `assistant doctor` shows the choice. "
        "Off: `n_ctx` and `n_gpu_layers` are used as set.",
        True,
    )
    n_threads: int | None = _doc("CPU threads for decoding. Unset: chosen for this machine.", None)
    n_batch: int = _doc("Prompt evaluation batch size.", 512)
    flash_attn: bool = _doc(
        "Flash attention: faster decoding (about +25% on CPU here) and a smaller KV cache.", True
    )
    prompt_cache_mb: int = _doc(
        "Memory for model states kept after answers, so going back to an earlier conversation does not "
        "evaluate its history again (0: only the last answer's prefix is reused).",
        256,
    )
    state_cache_disk_mb: int | None = _doc(
        "Disk for model states kept after answers (in the data folder's `states`), so a conversation "
        "goes on after a restart without evaluating its history again; the least recently used go "
        "first. Unset: 5% of the free disk, at most 4096. 0: none kept, and those kept are deleted. "
        "Never written for incognito conversations or with `log_content = false`.",
        None, shown="unset (5% of free disk, ≤ 4096)",
    )
    max_tokens: int = _doc("Longest answer in tokens; this much room is kept in the context.", 512)
    temperature: float = _doc("Sampling temperature; 0 gives the same answer every time.", 0.2)
    top_p: float = _doc("Nucleus sampling threshold.", 0.95)
    seed: int | None = _doc("Sampling seed. Unset: random.", None)
    system_prompt: str = _doc(
        "The system prompt at the top of every conversation (replaces the `system` prompt template).",
        DEFAULT_SYSTEM_PROMPT,
        shown="(see below)",
    )
    ab_system_prompt: str | None = _doc(
        "A/B test: the name of another system prompt template (a file in the prompts folder); every "
        "other new conversation gets it, and `assistant stats --by template` compares the two.",
        None,
    )
    rag_top_k: int = _doc("Passages from indexed folders placed in the prompt (0: never search).", 5)
    rag_min_similarity: float = _doc(
        "How similar (cosine of the embeddings) a passage must be to the question to be used and shown "
        "as a source; a question no indexed file is about gets none. Measured in docs/benchmarks.md "
        "(\"Retrieval on a real corpus\"); -1 keeps every passage found.",
        0.30,
    )
    sources_placement: str = _doc(
        "Where retrieved passages go. `system`: in the system prompt, where instructions planted in "
        "documents were followed least (docs/security.md); each question has other sources, so a "
        "conversation's earlier turns are evaluated again. `message`: a system message right before the "
        "question, so earlier turns are reused (a long conversation with folders answers sooner), but "
        "planted instructions were followed more often there.",
        "system",
    )
    chunk_tokens: int = _doc(
        "Size of an indexed chunk in the embedding model's word pieces (at most 254, what it reads whole); "
        "a change re-chunks each folder on its next index.", 200)
    chunk_overlap: int = _doc("Tokens shared by consecutive chunks, so no sentence is cut off.", 40)
    index_max_file_mb: float = _doc("Files larger than this are skipped when indexing.", 20.0)
    index_follow_outside_links: bool = _doc(
        "Index what symlinks in a folder point to outside it. Off: such links are skipped (and listed), "
        "so a folder from elsewhere cannot pull ~/.ssh or /etc into answers.", False
    )
    vector_store_url: str | None = _doc(
        "A Chroma server (http://host:8000) instead of the local vector store in the data folder.", None
    )
    memory_top_k: int = _doc(
        "Long-term memories recalled into the prompt for each question (pinned ones first; 0: none).", 3
    )
    memory_threshold: float = _doc(
        "How similar (cosine) a memory must be to the question to be recalled.", 0.3
    )
    memory_proposals: bool = _doc(
        "After each question, propose lasting facts and preferences the user stated as memories "
        "(shown for a yes or no; nothing is saved silently). Never with `log_content = false`.", True
    )
    summary_tokens: int = _doc(
        "Longest summary of older turns, written when a conversation outgrows the context window.", 200
    )
    tool_calling: str = _doc(
        "When the model may call tools: `auto` (local models whose chat template knows tools), "
        "`always` (every backend; a remote one then costs one more request per question), `off`.", "auto"
    )
    tool_choice: str = _doc(
        "`auto`: the model decides whether to call a tool; `required`: it must call one first.", "auto"
    )
    tools: tuple[str, ...] | None = _doc(
        "The tools the model may call, by name (`assistant plugins` lists them). Unset: all.", None
    )
    tool_max_steps: int = _doc("Most tool calls in one answer.", 4)
    backends: tuple[str, ...] = _doc(
        "Backends in the order they are tried: `local` and the names of `[providers.NAME]` tables.",
        ("local",),
    )
    allow_cloud: bool = _doc(
        "Let questions leave this machine for the configured providers. Off: everything stays local.",
        False,
    )
    fallback_on: tuple[str, ...] = _doc(
        "When the router tries the next backend: " + ", ".join(f"`{r}`" for r in FALLBACK_REASONS) + ".",
        FALLBACK_REASONS,
        shown="all six reasons",
    )
    first_token_deadline_s: float | None = _doc(
        "Fall back when the local model's first token takes longer than this. Unset: wait.", None
    )
    breaker_failures: int = _doc("Failures in a row that open a backend's circuit breaker.", 3)
    breaker_cooldown_s: float = _doc("Seconds an open breaker waits before letting one request try.", 30.0)
    budget_daily_usd: float | None = _doc("Cloud spending limit per day (UTC). Unset: none.", None)
    budget_monthly_usd: float | None = _doc(
        "Cloud spending limit per calendar month (UTC). Unset: none.", None
    )
    cache: bool = _doc(
        "Answer a repeated question from the exact response cache (only deterministic answers: "
        "temperature 0, unless cache_nondeterministic).",
        True,
    )
    cache_ttl_hours: float = _doc("How long a cached answer is reused.", 168.0)
    cache_nondeterministic: bool = _doc("Also cache answers sampled at a temperature above 0.", False)
    semantic_cache: bool = _doc(
        "Answer a new standalone question from a similar earlier one (same model, settings and sources), "
        "showing which. Off by default: similar is not the same.",
        False,
    )
    semantic_cache_similarity: float = _doc(
        "How similar (cosine of the questions' embeddings) counts as the same question.", 0.92
    )
    plugins: bool = _doc(
        "Load installed third-party plugins (entry point group `assistant.plugins`); "
        "`assistant --no-plugins` turns them off for one run.",
        True,
    )
    log_content: bool = _doc(
        "Store questions and answers. Off: timings, tokens and cost are still recorded, the text is not "
        "(conversations then live only while the app runs).",
        True,
    )
    alert_window: int = _doc("Answers in the recent window that alerts compare with the ones before.", 20)
    alert_latency_ratio: float = _doc(
        "Alert when the window's p95 latency is this many times the baseline's.", 2.0
    )
    alert_error_rate: float = _doc(
        "Alert when this share of the window's answers failed (and twice the baseline).", 0.25
    )
    alert_empty_retrieval_rate: float = _doc(
        "Alert when this share of the window's searches of indexed folders found nothing.", 0.5
    )
    hallucination_threshold: float = _doc(
        "Groundedness below which an answer that used sources counts as possibly made up: it goes to "
        "the review queue, and an alert is raised when the window's median falls below it.", 0.5
    )
    attribution: bool = _doc(
        "After an answer that used sources, find which source supports each sentence: `[n]` is added "
        "where the model cited none, and its groundedness recorded (engine/attribution.py).", True
    )
    stop_loops: bool = _doc(
        "Stop an answer that starts repeating itself (the same run of words three times) and keep it "
        "up to the first repeat.", True
    )
    otlp_endpoint: str | None = _doc(
        "Send traces to an OpenTelemetry collector (OTLP over HTTP, e.g. http://localhost:4318). Unset: off.",
        None,
    )
    eval_judge: str | None = _doc(
        "LLM-as-judge for `assistant eval`: a backend's name (`local` or a provider) or a GGUF file. "
        "Unset: no judge (`--judge` picks one for a run).",
        None,
    )
    mcp_writes: bool = _doc(
        "`assistant mcp` also offers agents tools that change things: remember a fact, index a folder. "
        "Off: its tools only read.", False
    )
    providers: dict[str, Provider] = field(
        default_factory=dict,
        metadata={"doc": "OpenAI-compatible servers, one `[providers.NAME]` table each (below)."},
    )
    prices: dict[str, Price] = field(
        default_factory=dict,
        metadata={"doc": "Price overrides, one `[prices.\"MODEL\"]` table each (below)."},
    )
    mcp_servers: dict[str, McpServer] = field(
        default_factory=dict,
        metadata={"doc": "MCP servers whose tools the model may call, one `[mcp_servers.NAME]` table each "
                         "(below)."},
    )

    def replace(self, **changes: Any) -> Settings:
        """A copy with `changes` applied (None values are ignored), validated."""
        given = {k: v for k, v in changes.items() if v is not None}
        return _validated(dataclasses.replace(self, **given), source="arguments")


FIELDS = {f.name: f for f in dataclasses.fields(Settings)}
PROVIDER_FIELDS = {f.name: f for f in dataclasses.fields(Provider)}
PRICE_FIELDS = {f.name: f for f in dataclasses.fields(Price)}
MCP_FIELDS = {f.name: f for f in dataclasses.fields(McpServer)}
TABLES = {"providers": (Provider, PROVIDER_FIELDS), "prices": (Price, PRICE_FIELDS),
          "mcp_servers": (McpServer, MCP_FIELDS)}

ABOVE_ZERO = 1e-9  # a lowest value standing for "more than 0"
# The values a number may take, (lowest, highest); None: no bound. Out of range is refused with
# the range named: llama.cpp took n_batch = 0 and then failed as if out of memory, and NaN,
# top_p = 7 or a negative price were used silently.
RANGES: dict[type, dict[str, tuple[float | None, float | None]]] = {
    Settings: {
        "n_gpu_layers": (-1, None), "n_threads": (1, None), "n_batch": (1, None),
        "prompt_cache_mb": (0, None), "temperature": (0, 2), "top_p": (0, 1), "rag_top_k": (0, None),
        "chunk_tokens": (16, None), "state_cache_disk_mb": (0, None),
        "chunk_overlap": (0, None), "index_max_file_mb": (ABOVE_ZERO, None), "memory_top_k": (0, None),
        "memory_threshold": (-1, 1), "summary_tokens": (1, None), "tool_max_steps": (0, None),
        "first_token_deadline_s": (ABOVE_ZERO, None), "breaker_failures": (1, None),
        "breaker_cooldown_s": (0, None), "budget_daily_usd": (0, None), "budget_monthly_usd": (0, None),
        "cache_ttl_hours": (0, None), "semantic_cache_similarity": (-1, 1), "alert_window": (1, None),
        "alert_latency_ratio": (ABOVE_ZERO, None), "alert_error_rate": (0, 1),
        "alert_empty_retrieval_rate": (0, 1), "hallucination_threshold": (0, 1),
    },
    Provider: {
        "context_window": (256, None), "connect_timeout_s": (ABOVE_ZERO, None),
        "read_timeout_s": (ABOVE_ZERO, None), "total_timeout_s": (ABOVE_ZERO, None), "max_retries": (0, None),
        "backoff_s": (0, None), "max_retry_wait_s": (0, None), "requests_per_minute": (ABOVE_ZERO, None),
    },
    Price: {"input_per_mtok": (0, None), "output_per_mtok": (0, None)},
    McpServer: {"timeout_s": (ABOVE_ZERO, None)},
}


def _check_ranges(item: Any, source: str, from_env: frozenset[str] = frozenset()) -> None:
    fields = {f.name: f for f in dataclasses.fields(item)}
    for name, (low, high) in RANGES[type(item)].items():
        value = getattr(item, name)
        if value is None:
            continue
        if math.isfinite(value) and (low is None or value >= low) and (high is None or value <= high):
            continue
        number = "a whole number" if "int" in str(fields[name].type) else "a number"
        if low == ABOVE_ZERO:
            allowed = f"{number} above 0"
        elif high is None:
            allowed = f"{number} of {low:g} or more"
        else:
            allowed = f"{number} from {low:g} to {high:g}"
        raise ConfigError(f"`{name}` = {value!r} ({_where(name, source, from_env)}) is out of range.",
                          hint=f"Use {allowed}.")


def _where(name: str, source: str, from_env: frozenset[str]) -> str:
    """Where a setting's value came from: its environment variable, else the file (or arguments)."""
    return f"ASSISTANT_{name.upper()}" if name in from_env else source


def load_settings(path: Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Read the config file (if any) and the environment into one validated `Settings`."""
    path = path or config_file()
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    if path.exists():
        try:
            values.update(tomllib.loads(path.read_text(encoding="utf-8")))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"The config file {path} is not valid TOML: {exc}.", hint="Fix or remove it."
            ) from exc
        except OSError as exc:
            raise ConfigError(f"The config file {path} cannot be read: {exc.strerror}.") from exc
        unknown = sorted(set(values) - set(FIELDS))
        if unknown:
            raise ConfigError(
                f"Unknown setting {', '.join(map(repr, unknown))} in {path}.",
                hint=f"Known settings: {', '.join(FIELDS)}.",
            )
    for table, (kind, fields) in TABLES.items():
        if table in values:
            values[table] = _tables(values[table], table, kind, fields, path)
    from_env = frozenset(name for name in FIELDS
                         if name not in TABLES and environ.get(f"ASSISTANT_{name.upper()}") is not None)
    for name in from_env:
        values[name] = _from_env(name, environ[f"ASSISTANT_{name.upper()}"])
    for name, f in FIELDS.items():  # TOML lists into the tuples settings hold (`tools` too)
        if str(f.type).startswith("tuple") and isinstance(values.get(name), list):
            values[name] = tuple(values[name])
    try:
        settings = Settings(**values)
    except TypeError as exc:  # pragma: no cover - unknown keys are caught above
        raise ConfigError(str(exc)) from exc
    return _validated(settings, source=str(path), from_env=from_env)


def _tables(raw: Any, table: str, kind: type, fields: dict[str, Any], path: Path) -> dict[str, Any]:
    """`[providers.NAME]` / `[prices."MODEL"]` tables into dataclasses, checked like settings."""
    if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
        raise ConfigError(f"`{table}` in {path} must hold one [{table}.NAME] table per entry.")
    parsed = {}
    for name, entry in raw.items():
        if table == "providers" and any("key" in k and k not in fields for k in entry):
            # The value is never echoed: it is a secret in the wrong place.
            raise ConfigError(
                f"Provider {name!r} in {path} has an API key written in the config file.",
                hint="Remove it; put the key in an environment variable named by `api_key_env`, "
                "or in the OS keyring (`api_key_keyring`).",
            )
        unknown = sorted(set(entry) - set(fields))
        if unknown:
            raise ConfigError(
                f"Unknown setting {', '.join(map(repr, unknown))} in [{table}.{name}] of {path}.",
                hint=f"Known settings: {', '.join(fields)}.",
            )
        if kind is Provider:
            entry = {**entry, "name": name}
        entry = {k: tuple(v) if isinstance(v, list) else v for k, v in entry.items()}
        item = kind(**entry)
        _check_types(item, fields, f"[{table}.{name}] of {path}")
        _check_ranges(item, f"[{table}.{name}] of {path}")
        parsed[name] = item
    return parsed


def _from_env(name: str, raw: str) -> Any:
    kind = FIELDS[name].type
    if raw == "" and "None" in str(kind):
        return None
    if str(kind).startswith("tuple"):
        if raw.strip().startswith("["):  # written as in the config file: ["local", "fake"]
            try:
                names = json.loads(raw)
                if isinstance(names, list) and all(isinstance(n, str) for n in names):
                    return tuple(names)
            except ValueError:
                pass
            raise ConfigError(f"ASSISTANT_{name.upper()}={raw!r} is not a list of names.",
                              hint=f'Use names separated by commas (ASSISTANT_{name.upper()}=local,fake) '
                                   'or a JSON list (["local", "fake"]).')
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    if kind == "bool":
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"ASSISTANT_{name.upper()}={raw!r} is not true or false.", hint="Use 1 or 0.")
    try:
        if "int" in str(kind):
            return int(raw)
        if "float" in str(kind):
            return float(raw)
    except ValueError as exc:
        raise ConfigError(
            f"ASSISTANT_{name.upper()}={raw!r} is not a number.",
            hint=f"Set it to a {'whole ' if 'int' in str(kind) else ''}number.",
        ) from exc
    return raw


def _check_types(
    item: Any, fields: dict[str, Any], source: str, from_env: frozenset[str] = frozenset()
) -> None:
    for name, f in fields.items():
        value = getattr(item, name)
        kind = str(f.type)
        where = _where(name, source, from_env)
        if value is None:
            if "None" not in kind:
                raise ConfigError(f"Setting {name!r} ({where}) must have a value.")
            continue
        if kind.startswith("tuple"):
            if not isinstance(value, tuple) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"Setting {name!r} ({where}) must be a list of names, not {value!r}.")
            continue
        if kind.startswith("dict"):
            if not isinstance(value, dict):
                raise ConfigError(f"Setting {name!r} ({where}) must be a table, not {value!r}.")
            if name in ("headers", "env") and not all(isinstance(v, str) for v in value.values()):
                what = "header" if name == "headers" else "variable"
                raise ConfigError(f"Setting {name!r} ({where}) must map {what} names to text.")
            continue
        if kind == "bool" and not isinstance(value, bool):
            raise ConfigError(f"Setting {name!r} ({where}) must be true or false, not {value!r}.")
        if "int" in kind and (isinstance(value, bool) or not isinstance(value, int)):
            raise ConfigError(f"Setting {name!r} ({where}) must be a whole number, not {value!r}.")
        if "float" in kind and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ConfigError(f"Setting {name!r} ({where}) must be a number, not {value!r}.")
        if "str" in kind and not isinstance(value, str):
            raise ConfigError(f"Setting {name!r} ({where}) must be text, not {value!r}.")


def _validated(settings: Settings, source: str, from_env: frozenset[str] = frozenset()) -> Settings:
    def where(name: str) -> str:
        return _where(name, source, from_env)

    _check_types(settings, FIELDS, source, from_env)
    if not settings.backends:
        raise ConfigError(f"`backends` ({where('backends')}) is empty: no backend would answer.",
                          hint='Name at least one, e.g. backends = ["local"] (ASSISTANT_BACKENDS=local).')
    for name in settings.backends:
        if name != "local" and name not in settings.providers:
            raise ConfigError(
                f"`backends` ({where('backends')}) names {name!r}, which is neither `local` nor a provider.",
                hint=f"Add a [providers.{name}] table, or remove it from `backends`.",
            )
    unknown = sorted(set(settings.fallback_on) - set(FALLBACK_REASONS))
    if unknown:
        raise ConfigError(
            f"`fallback_on` ({where('fallback_on')}) has unknown reason {', '.join(map(repr, unknown))}.",
            hint=f"Known reasons: {', '.join(FALLBACK_REASONS)}.",
        )
    for name, server in settings.mcp_servers.items():
        if not server.command:
            raise ConfigError(f"MCP server {name!r} ({source}) needs a `command`.")
    for provider in settings.providers.values():
        if not provider.base_url.startswith(("http://", "https://")) or not provider.model:
            raise ConfigError(
                f"Provider {provider.name!r} ({source}) needs a `base_url` (http:// or https://) "
                "and a `model`."
            )
    for name, allowed in (("tool_calling", ("auto", "always", "off")), ("tool_choice", ("auto", "required")),
                          ("sources_placement", ("system", "message"))):
        if getattr(settings, name) not in allowed:
            raise ConfigError(f"`{name}` ({where(name)}) is {getattr(settings, name)!r}.",
                              hint=f"Use one of: {', '.join(allowed)}.")
    if settings.n_ctx < 256:
        raise ConfigError(f"n_ctx={settings.n_ctx} ({where('n_ctx')}) is too small.", hint="Use 256 or more.")
    if not 1 <= settings.max_tokens < settings.n_ctx:
        raise ConfigError(
            f"max_tokens={settings.max_tokens} ({where('max_tokens')}) must be between 1 and n_ctx-1 "
            f"({settings.n_ctx - 1})."
        )
    _check_ranges(settings, source, from_env)
    if settings.chunk_overlap >= settings.chunk_tokens:
        raise ConfigError(f"chunk_overlap={settings.chunk_overlap} ({where('chunk_overlap')}) must be "
                          f"smaller than chunk_tokens={settings.chunk_tokens}.")
    if not -1 <= settings.rag_min_similarity <= 1:
        raise ConfigError(f"rag_min_similarity={settings.rag_min_similarity} ({source}) is not a cosine "
                          "similarity.", hint="Use a number from -1 (keep every passage) to 1.")
    return settings
