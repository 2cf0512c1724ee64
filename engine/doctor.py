"""`assistant doctor`: what is installed, which model, which paths, and whether each is healthy."""

from __future__ import annotations

import os
import platform
import sqlite3
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from engine import cpu_budget, hardware
from engine.backends.base import origin
from engine.config import Settings
from engine.errors import AssistantError
from engine.fit import Fit, Hardware, ModelShape, fit_model, min_context, size_text
from engine.gguf import GGUFInfo, read_gguf
from engine.models import available_models, resolve_model
from engine.paths import config_file, data_dir, database_file
from engine.registry import Registry
from memory.store import Store


@dataclass(frozen=True)
class Check:
    section: str
    name: str
    value: str
    ok: bool = True
    hint: str = ""  # what to do about it (a command to run)
    warn: bool = False  # works, but slower than it could: said, without failing the doctor


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def diagnose(settings: Settings) -> list[Check]:
    checks = [
        Check("versions", "assistant", _version("assistant")),
        Check("versions", "python", platform.python_version()),
        Check("versions", "textual", _version("textual")),
        Check("versions", "llama-cpp-python", _version("llama_cpp_python")),
        Check("versions", "sqlite", sqlite3.sqlite_version),
    ]
    gpus = hardware.detect_gpus()
    llama, offload = _llama_checks(settings, gpus)
    checks += llama
    hw = hardware.detect(offload, gpus) if offload is not None else None
    if hw is not None:
        checks += _hardware_checks(hw, gpus)
    model, info = _model_checks(settings)
    checks += model
    if info is not None and hw is not None:
        checks += _fit_checks(settings, info, hw)
    checks += [
        Check("paths", "data folder", str(data_dir())),
        Check("paths", "config file",
              f"{config_file()}" + ("" if config_file().exists() else " (none: defaults)")),
    ]
    checks += _database_checks()
    checks += _state_checks(settings)
    checks += _index_checks(settings)
    checks += _routing_checks(settings)
    checks += cpu_checks(settings)
    return checks


def _llama_checks(settings: Settings, gpus: list[hardware.GPU]) -> tuple[list[Check], bool | None]:
    from engine.backends.local import gpu_offload_supported, system_info

    try:
        gpu = gpu_offload_supported()
    except ImportError as exc:
        return [Check("llama.cpp", "import", f"failed: {exc}", ok=False)], None
    features = system_info()
    checks = [Check("llama.cpp", "GPU offload", "supported" if gpu else "not in this build (CPU only)")]
    advice = hardware.gpu_advice(gpus, gpu)
    if advice is not None:
        needs = f" (install {advice.needs} first)" if advice.needs else ""
        checks.append(Check(
            "llama.cpp", "GPU build",
            f"{advice.gpu} found, but this llama-cpp-python cannot use it; "
            f"rebuild it with {advice.build}{needs}:",
            ok=not advice.worth_it, hint=advice.command,
        ))
    checks += [
        Check("llama.cpp", "n_threads", f"{settings.n_threads} (setting `n_threads`)" if settings.n_threads
              else "chosen for the cores free at each answer (see cpu)"),
        Check("llama.cpp", "flash attention", "on" if settings.flash_attn else "off"),
        Check("llama.cpp", "build", features),
    ]
    return checks, gpu


def _hardware_checks(hw: Hardware, gpus: list[hardware.GPU]) -> list[Check]:
    names = ", ".join(g.name for g in gpus) or "none found"
    checks = [Check("hardware", "GPU", names)]
    if hw.unified_memory:
        checks.append(Check("hardware", "GPU memory", "unified with RAM"))
    elif gpus:
        vram = f"{size_text(hw.vram_free)} free of {size_text(hw.vram_total)}"
        checks.append(Check("hardware", "GPU memory", vram))
    ram = f"{size_text(hw.ram_available)} available of {size_text(hw.ram_total)}"
    checks.append(Check("hardware", "RAM", ram))
    return checks


def _model_checks(settings: Settings) -> tuple[list[Check], GGUFInfo | None]:
    try:
        path = resolve_model(settings.model, settings.models_dir)
        info = read_gguf(path)
    except AssistantError as exc:
        return [Check("model", "file", str(exc), ok=False)], None
    default = Registry().default
    chosen = (f"{settings.model} (setting `model`)" if settings.model else
              f"{default} (assistant models use)" if default else "the embedded model")
    checks = [
        Check("model", "chosen", chosen),
        Check("model", "file", str(path)),
        Check("model", "size", f"{info.file_size / 1e6:,.1f} MB"),
        Check("model", "GGUF header", f"valid (version {info.version}, {info.tensor_count} tensors)"),
        Check("model", "architecture", str(info.architecture)),
        Check("model", "quantization", str(info.quantization)),
        Check("model", "trained context", str(info.context_length)),
        Check("model", "chat template", "present" if info.has_chat_template else "missing (generic format)",
              ok=info.has_chat_template),
    ]
    if settings.models_dir:
        names = ", ".join(p.stem for p in available_models(settings.models_dir)) or "none found"
        checks.append(Check("model", "models_dir", f"{settings.models_dir}: {names}"))
    return checks, info


def fit_for(settings: Settings, info: GGUFInfo, hw: Hardware) -> Fit:
    """What the local backend will choose when it loads this model with these settings."""
    return fit_model(info, hw, n_ctx=settings.n_ctx, n_gpu_layers=settings.n_gpu_layers,
                     auto_fit=settings.auto_fit, n_batch=settings.n_batch, flash_attn=settings.flash_attn,
                     min_ctx=min_context(settings.max_tokens))


def _fit_checks(settings: Settings, info: GGUFInfo, hw: Hardware) -> list[Check]:
    shape = ModelShape.from_gguf(info)
    fit = fit_for(settings, info, hw)
    layers = "all" if fit.n_gpu_layers < 0 else str(fit.n_gpu_layers)
    return [
        Check("fit", "weights", size_text(shape.weights_bytes)),
        Check("fit", "KV cache", f"{size_text(shape.kv_bytes(fit.n_ctx))} at n_ctx {fit.n_ctx}"),
        Check("fit", "placement", f"{fit.placement}: {fit.memory_text}", ok=fit.fits is not False),
        Check("fit", "n_gpu_layers", layers + ("" if settings.n_gpu_layers is None else " (configured)")),
        Check("fit", "n_ctx", str(fit.n_ctx) + ("" if fit.n_ctx == settings.n_ctx else
                                                f" (asked: {settings.n_ctx})")),
        Check("fit", "why", fit.reason, hint="Override with n_gpu_layers, n_ctx or auto_fit = false "
              "in the config file." if settings.auto_fit else ""),
    ]


def _state_checks(settings: Settings) -> list[Check]:
    """The model states kept on disk (engine/backends/disk_states.py): what they take, and the bound."""
    from engine.backends import disk_states

    folder = disk_states.states_folder()
    files, used = disk_states.usage(folder)
    bound = settings.state_cache_disk_mb
    if bound is None:
        bound = disk_states.default_capacity_mb(folder)
    limit = "off (state_cache_disk_mb = 0)" if bound == 0 else f"at most {size_text(bound << 20)}"
    return [Check("paths", "model states", f"{size_text(used)} in {files} file{'s' * (files != 1)}, {limit}: "
                  f"{folder}", hint="Clear them: `assistant prune`, or set state_cache_disk_mb = 0."
                  if files else "")]


def _database_checks() -> list[Check]:
    path = database_file()
    if not path.exists():
        return [Check("database", "file", f"{path} (created on first answer)")]
    try:
        store = Store(path)
        try:
            health = store.health()
        finally:
            store.close()
    except AssistantError as exc:
        return [Check("database", "file", str(exc), ok=False)]
    return [
        Check("database", "file", f"{path} ({Path(path).stat().st_size / 1e3:,.0f} kB)"),
        Check("database", "schema version", str(health["schema_version"])),
        Check("database", "journal mode", health["journal_mode"], ok=health["journal_mode"] == "wal"),
        Check("database", "integrity", health["integrity"], ok=health["integrity"] == "ok"),
        Check(
            "database",
            "rows",
            ", ".join(f"{health[table]:,} {table if health[table] != 1 else one}" for table, one in (
                ("conversations", "conversation"), ("messages", "message"), ("responses", "response"),
                ("feedback", "feedback"))),
        ),
    ]


def _index_checks(settings: Settings) -> list[Check]:
    """Whether Chroma holds a vector for every chunk in SQLite and nothing else: a rebuild killed
    half-way, or a lost vector folder, otherwise only shows as searches quietly using BM25 alone."""
    path = database_file()
    if not path.exists():
        return []
    from engine.knowledge import Knowledge
    from memory.indexer import REBUILD_KEY

    try:
        store = Store(path)
    except AssistantError:
        return []  # the database checks above already report it
    try:
        knowledge = Knowledge(settings, store)
        chunks = knowledge.corpus.chunk_ids()
        if not chunks:
            return [Check("index", "vectors", "no folder indexed")]
        interrupted = knowledge.corpus.meta(REBUILD_KEY) is not None
        if not settings.vector_store_url and not (knowledge.folder / "chroma").exists():
            vectors: set[int] = set()  # not opened: that would create an empty store
        else:
            vectors = knowledge.vectors.ids()
    except AssistantError as exc:
        return [Check("index", "vectors", str(exc), ok=False,
                      hint="`assistant index --rebuild` recreates the vector store from the database.")]
    finally:
        store.close()
    missing, orphans = len(chunks - vectors), len(vectors - chunks)
    value = f"{len(vectors):,} of {len(chunks):,} chunks have a vector"
    if orphans:
        value += f", {orphans:,} vector{'s' if orphans != 1 else ''} without a chunk"
    if interrupted:
        value += "; a rebuild was interrupted"
    ok = not (missing or orphans or interrupted)
    hint = "" if ok else ("`assistant index FOLDER` (any indexed folder) embeds the missing ones and removes "
                          "the others; `assistant index --rebuild` redoes them all.")
    return [Check("index", "vectors", value, ok=ok, hint=hint)]


def _routing_checks(settings: Settings) -> list[Check]:
    """The route, and each backend's circuit breaker as the last answers left it."""
    checks = [
        Check("routing", "route", " -> ".join(settings.backends)),
        Check("routing", "cloud", "allowed" if settings.allow_cloud else "off (nothing leaves this machine)"),
    ]
    for name, provider in settings.providers.items():
        kind = "trusted server" if provider.trusted else "cloud"
        checks.append(Check("routing", name, f"{kind}: {provider.model} at {origin(provider.base_url)}"))
    path = database_file()
    breakers: dict[str, dict] = {}
    if path.exists():
        try:
            store = Store(path)
            try:
                breakers = store.breakers()
            finally:
                store.close()
        except AssistantError:
            pass  # the database checks above already report it
    for name in ["local", *settings.providers]:
        row = breakers.get(name)
        if row is None or row["state"] == "closed" and not row["failures"]:
            checks.append(Check("breakers", name, "closed"))
            continue
        detail = f"{row['state']}, {row['failures']} failures in a row; last: {row['last_error']}"
        checks.append(Check("breakers", name, detail, ok=row["state"] == "closed"))
    return checks


def cpu_checks(settings: Settings, measure_s: float = 0.5) -> list[Check]:
    """The thread plan for this machine now, measured over `measure_s`."""
    meter = cpu_budget.CpuMeter()
    time.sleep(measure_s)
    meter.last_busy = meter.others_busy(min_interval=0.0)
    cores = cpu_budget.measure(meter)
    return plan_checks(cores, cpu_budget.plan(cores, settings.n_threads), dict(os.environ))


def plan_checks(cores: cpu_budget.Cores, plan: cpu_budget.ThreadPlan, environ: dict[str, str]) -> list[Check]:
    limits = f"{cores.affinity} CPUs this process may use"
    if cores.quota is not None:
        limits += f", cgroup quota {cores.quota:g} cores"
    if cores.logical_per_core > 1:
        limits += f", {cores.logical_per_core} hardware threads per core"
    checks = [
        Check("cpu", "cores", f"{plan.usable} usable ({limits})"),
        Check("cpu", "busy elsewhere", f"{cores.others_busy:.1f} cores kept busy by other programs now",
              warn=plan.oversubscribed,
              hint="The machine is oversubscribed: answers decode on 1 thread and slower until the "
                   "other programs finish (see `top`)." if plan.oversubscribed else ""),
        Check("cpu", "thread plan", plan.describe()),
    ]
    wait = {name: environ[name] for name in cpu_budget.WAIT_ENV_NAMES if name in environ}
    passive = wait.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE"
    checks.append(Check("cpu", "waiting threads",
                        " ".join(f"{k}={v}" for k, v in wait.items()) + " (set in your environment)" if wait
                        else "libgomp's default: spin, then sleep (threads follow the free cores instead)",
                        warn=passive,
                        hint="OMP_WAIT_POLICY=PASSIVE decoded at 0.30x on an idle machine "
                             "(docs/benchmarks.md): unset it." if passive else ""))
    checks.append(Check("cpu", "background work",
                        f"indexing at nice +{cpu_budget.BACKGROUND_NICE}, paused while an answer streams"))
    return checks
