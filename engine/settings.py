"""The settings model: `Settings` and its tables (`[providers.NAME]`, `[prices."MODEL"]`,
`[mcp_servers.NAME]`), every field with its default and its documentation.

`docs/configuration.md` lists them for users (engine/config_docs.py); engine/config.py reads them
from the file and the environment, engine/config_check.py validates them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

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
    n_threads: int | None = _doc(
        "CPU threads for decoding. Unset: the cores this process may use (affinity, cgroup quota) that other "
        "programs leave free, re-read while it decodes; the chat app leaves one to drawing the answer "
        "(`assistant doctor` shows the plan).", None)
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
    rag_top_k: int = _doc("Passages from indexed folders placed in the prompt (0: never search).", 3)
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
        from engine.config_check import validated  # it reads this module's tables

        given = {k: v for k, v in changes.items() if v is not None}
        return validated(dataclasses.replace(self, **given), source="arguments")


FIELDS = {f.name: f for f in dataclasses.fields(Settings)}
PROVIDER_FIELDS = {f.name: f for f in dataclasses.fields(Provider)}
PRICE_FIELDS = {f.name: f for f in dataclasses.fields(Price)}
MCP_FIELDS = {f.name: f for f in dataclasses.fields(McpServer)}
TABLES = {"providers": (Provider, PROVIDER_FIELDS), "prices": (Price, PRICE_FIELDS),
          "mcp_servers": (McpServer, MCP_FIELDS)}
