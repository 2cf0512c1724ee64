"""`assistant models`: list, add, pull, remove, use and inspect GGUF model files."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from app.cli.common import get_settings, root_model
from engine import AssistantError, ModelError


def _size(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


def _params(n: int) -> str:
    if not n:
        return "?"
    return f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.0f}M"


def _progress(transient: bool = True) -> Any:
    """A rich progress bar on stderr: bytes, speed, time left."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(),
                    TransferSpeedColumn(), TimeRemainingColumn(), console=Console(stderr=True),
                    transient=transient)


@click.group("models")
def models() -> None:
    """Model files: list, add, pull, remove, use, info.

    \b
    assistant models pull bartowski/Qwen2.5-0.5B-Instruct-GGUF/Qwen2.5-0.5B-Instruct-Q4_K_M.gguf
    assistant models add ~/Downloads/llama-3.2-3b-instruct-q4_k_m.gguf --name llama3.2-3b
    assistant models use llama3.2-3b
    assistant models info llama3.2-3b

    Every file is checked (GGUF header, tensor offsets, counts) before it is registered or loaded.
    """


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_models(as_json: bool) -> None:
    """Registered models, files in models_dir, and the embedded model; * marks the one used."""
    from engine import model_catalog

    try:
        settings = get_settings(model=root_model())
        rows = model_catalog(settings.model, settings.models_dir)
    except AssistantError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    from app.tables import print_table, text

    table = Table("  name", "size", "params", "quant", "ctx", "arch", "source", box=None)
    for r in rows:
        mark = "*" if r["default"] else "!" if "error" in r else " "  # in the name: it heads a stacked block
        if "error" in r:
            table.add_row(text(f"{mark} {r['name']}"), "-", "-", "-", "-", "-",
                          text(f"{r['source']}; {r['error']}"))
            continue
        table.add_row(text(f"{mark} {r['name']}"), _size(r["size"]), _params(r["parameters"]),
                      str(r["quantization"]), str(r["context_length"]), str(r["architecture"]),
                      text(r["source"]))
    print_table(table, Console())  # whole names and paths: a table when it fits, else one block per model
    if not any(r["default"] for r in rows):
        click.echo("\nThe configured model is not among these: see `assistant doctor`.")


@models.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", help="The name to use it by (default: the file name without .gguf).")
@click.option("--copy", is_flag=True, help="Copy the file into the data folder (removed with the model).")
@click.option("--use", "make_default", is_flag=True, help="Also make it the default model.")
def add(path: Path, name: str | None, copy: bool, make_default: bool) -> None:
    """Register the GGUF file PATH (checked first; left where it is unless --copy)."""
    from engine import Registry, check_model_name, read_gguf

    registry = Registry()
    try:
        read_gguf(path)  # refuse a bad file, or a taken name, before copying gigabytes
        taken = registry.get(check_model_name(name or path.stem))
        if taken is not None:
            raise ModelError(f"A model named {taken.name!r} is already registered ({taken.path}).",
                             hint="Choose another name with --name, or `assistant models remove` it first.")
        if copy:
            with _progress() as bar:
                task = bar.add_task("copying", total=path.stat().st_size)
                path = registry.copy_in(path, lambda done, total: bar.update(task, completed=done))
        with _progress() as bar:
            task = bar.add_task("SHA-256", total=path.stat().st_size)
            try:
                entry, info = registry.add(path, name=name, managed=copy,
                                           progress=lambda done, total: bar.update(task, completed=done))
            except AssistantError:
                if copy:
                    path.unlink(missing_ok=True)
                raise
        if make_default:
            registry.use(entry.name)
    except AssistantError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Registered {entry.name}: {info.architecture}, {_params(info.parameter_count)} parameters, "
               f"{info.quantization}, context {info.context_length}, {_size(info.file_size)}.")
    _after_register(entry.name, make_default)


def _after_register(name: str, made_default: bool) -> None:
    if made_default:
        click.echo(f"{name} is now the default model.")
        _warn_if_overridden(name)
    else:
        click.echo(f"Use it with `assistant --model {name}`, or make it the default: "
                   f"`assistant models use {name}`.")


def _warn_if_overridden(name: str) -> None:
    settings = get_settings()
    if settings.model:
        click.secho(f"Note: the setting `model = {settings.model!r}` (config file or ASSISTANT_MODEL) "
                    f"wins over this default; remove it to use {name}.", fg="yellow", err=True)


@models.command()
@click.argument("source")
@click.option("--name", help="The name to use it by (default: the file name without .gguf).")
@click.option("--sha256", help="The expected SHA-256 (otherwise from URL.sha256 or the server, if any).")
@click.option("--use", "make_default", is_flag=True, help="Also make it the default model.")
def pull(source: str, name: str | None, sha256: str | None, make_default: bool) -> None:
    """Download a GGUF model and register it; an interrupted download resumes.

    SOURCE is an http(s) URL or a Hugging Face owner/repo/file.gguf, which expands to
    https://huggingface.co/owner/repo/resolve/main/file.gguf (HF_ENDPOINT for a mirror; HF_TOKEN
    for gated models). The file goes to the models/ folder of the data folder.
    """
    from engine import Registry, download_file_name, download_model, expand_source

    try:
        url = expand_source(source)
        label = download_file_name(url)
    except AssistantError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Downloading {url}", err=True)
    bar = _progress(transient=False)
    tasks: dict[str, Any] = {}
    arrived = [0]  # bytes of the file here so far: with none, there is nothing to resume

    def progress(stage: str, done: int, total: int | None) -> None:
        if stage != "checking":
            arrived[0] = done
        if stage not in tasks:
            text = "checking what is here" if stage == "checking" else label
            tasks[stage] = bar.add_task(text, total=total)
        bar.update(tasks[stage], completed=done, total=total)

    try:
        with bar:
            pulled = download_model(source, name=name, sha256=sha256, progress=progress)
    except KeyboardInterrupt:
        click.echo(f"\nStopped after {_size(arrived[0])}. Run the same command again to resume from there."
                   if arrived[0] else "\nStopped before any of it arrived.", err=True)
        sys.exit(130)
    except AssistantError as exc:
        raise click.ClickException(str(exc)) from exc
    if pulled.resumed_from:
        click.echo(f"Resumed at {_size(pulled.resumed_from)}.", err=True)
    if pulled.checksum_source:
        click.echo(f"SHA-256 verified against {pulled.checksum_source}.")
    else:
        click.echo(f"No checksum was published for it; its SHA-256 is {pulled.entry.sha256} (recorded).")
    info = pulled.info
    click.echo(f"Registered {pulled.entry.name}: {info.architecture}, {_params(info.parameter_count)} "
               f"parameters, {info.quantization}, context {info.context_length}, {_size(info.file_size)}.")
    if make_default:
        try:
            Registry().use(pulled.entry.name)
        except AssistantError as exc:
            raise click.ClickException(str(exc)) from exc
    _after_register(pulled.entry.name, make_default)


@models.command()
@click.argument("name")
@click.option("--keep-file", is_flag=True, help="Unregister only; leave a downloaded file on disk.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before deleting a downloaded file.")
def remove(name: str, keep_file: bool, yes: bool) -> None:
    """Unregister model NAME. Downloaded (and copied) files are deleted; added files stay."""
    from engine import Registry

    registry = Registry()
    try:
        entry = registry.find(name)
        delete = entry.managed and not keep_file
        if delete and not yes:
            size = entry.file.stat().st_size if entry.file.exists() else 0
            click.confirm(f"Delete {entry.path} ({_size(size)})?", abort=True)
        was_default = registry.default == name
        _, deleted = registry.remove(name, delete_file=delete)
    except AssistantError as exc:
        raise click.ClickException(str(exc)) from exc
    where = f"; {entry.path} deleted" if deleted else f"; the file {entry.path} is left where it is"
    click.echo(f"Removed {name}{where}.")
    if was_default:
        click.echo("The default model is the embedded one again (`assistant models use NAME` picks another).")


@models.command()
@click.argument("name")
def use(name: str) -> None:
    """Make model NAME the default (the embedded model's name goes back to it)."""
    from engine import DEFAULT_MODEL_FILE, Registry

    registry = Registry()
    try:
        if registry.get(name) is None and name == Path(DEFAULT_MODEL_FILE).stem:
            registry.use(None)
        else:
            registry.use(name)
    except AssistantError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{name} is now the default model.")
    _warn_if_overridden(name)


@models.command()
@click.argument("model")
@click.option("--n-ctx", type=int, help="Estimate memory for this context (default: the n_ctx setting).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def info(model: str, n_ctx: int | None, as_json: bool) -> None:
    """The GGUF metadata of MODEL (a name or a path), read from its header without loading the
    weights, and what it needs in memory on this machine."""
    from engine import (
        ModelShape,
        Registry,
        describe_model,
        detect_hardware,
        fit_for,
        read_gguf,
        resolve_model,
        size_text,
    )

    settings = get_settings()
    if n_ctx is not None:
        settings = settings.replace(n_ctx=n_ctx, max_tokens=min(settings.max_tokens, n_ctx // 2))
    try:
        path = resolve_model(model, settings.models_dir)
        meta = read_gguf(path)
    except AssistantError as exc:
        raise click.ClickException(str(exc)) from exc
    entry = Registry().by_path(path)
    shape = ModelShape.from_gguf(meta)
    fit = fit_for(settings, meta, detect_hardware())
    result: dict[str, Any] = {
        "path": str(path),
        **describe_model(meta),
        "registered_as": entry.name if entry else None,
        "sha256": entry.sha256 if entry else None,
        "source": entry.source if entry else None,
        "memory": {
            "weights": shape.weights_bytes,
            "kv_cache": shape.kv_bytes(fit.n_ctx),
            "kv_per_token": shape.kv_bytes(1),
            "n_ctx": fit.n_ctx,
        },
        "fit": {"n_gpu_layers": fit.n_gpu_layers, "n_ctx": fit.n_ctx, "placement": fit.placement,
                "gpu_bytes": fit.gpu_bytes, "ram_bytes": fit.ram_bytes, "fits": fit.fits,
                "reason": fit.reason},
    }
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    lines = [
        ("file", f"{path} ({_size(meta.file_size)})"),
        ("registered as", result["registered_as"] or "not registered"),
        ("name", meta.name),
        ("architecture", str(meta.architecture)),
        ("parameters", f"{_params(meta.parameter_count)} ({meta.parameter_count:,})"),
        ("quantization", str(meta.quantization)),
        ("context length", f"{meta.context_length} tokens (trained)"),
        ("layers", f"{meta.block_count}, embedding {meta.embedding_length}, heads {meta.head_count} "
                   f"(KV heads {meta.head_count_kv})"),
        ("vocabulary", f"{meta.vocab_size:,} tokens" if meta.vocab_size else "unknown"),
        ("chat template", "present" if meta.has_chat_template else "missing (a generic format is used)"),
        ("GGUF", f"version {meta.version}, {meta.tensor_count} tensors, header valid"),
    ]
    if entry:
        lines += [("sha256", str(entry.sha256)), ("source", entry.source or "added from a local file")]
    lines += [
        ("memory", f"weights {size_text(shape.weights_bytes)}; KV cache "
                   f"{size_text(shape.kv_bytes(fit.n_ctx))} at n_ctx {fit.n_ctx} "
                   f"({size_text(shape.kv_bytes(1024))} per 1k tokens)"),
        ("on this machine", f"{fit.placement}, n_ctx {fit.n_ctx}: {fit.memory_text}"),
        ("", fit.reason),
    ]
    for key, value in lines:
        click.echo(f"  {key:<16} {value}")


COMMANDS = [models]
