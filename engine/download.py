"""`assistant models pull`: download a GGUF file over HTTP, resumable, checked, then registered.

The file grows as `NAME.part` in the models folder, next to `NAME.part.json` (the URL and the
server's validator). An interrupted download (Ctrl-C, a dropped connection, a reboot) resumes
with an HTTP Range request guarded by If-Range: if the file changed on the server meanwhile, it
starts over instead of splicing two versions. The SHA-256 is computed while the bytes arrive and
compared with the one expected (given with --sha256, the URL's `.sha256` sidecar, or Hugging
Face's `X-Linked-Etag`); a mismatch deletes the download and registers nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import filelock
import httpx

from engine.errors import DownloadError, InvalidModelError, ModelError
from engine.gguf import MAGIC, GGUFInfo, read_gguf
from engine.paths import ensure_private_dir
from engine.registry import ModelEntry, Registry, check_name, models_folder

HF_ENDPOINT = "https://huggingface.co"
CHUNK = 1 << 20
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
# stage: "checking" (hashing a partial download before resuming) or "downloading"
Progress = Callable[[str, int, int | None], None]


def hf_endpoint() -> str:
    """Hugging Face's address; HF_ENDPOINT points to a mirror, as with huggingface_hub."""
    return os.environ.get("HF_ENDPOINT", HF_ENDPOINT).rstrip("/")


def expand_source(source: str) -> str:
    """A URL, or a Hugging Face `owner/repo/file.gguf` short name, as a download URL."""
    source = source.strip()
    if source.startswith(("http://", "https://")):
        # The address of a file's page on Hugging Face (…/blob/…) is what people copy.
        parts = urlsplit(source)
        if parts.netloc == urlsplit(hf_endpoint()).netloc and "/blob/" in parts.path:
            return source.replace("/blob/", "/resolve/", 1)
        return source
    if source.startswith("hf://"):
        source = source[5:]
    pieces = [p for p in source.split("/") if p]
    if len(pieces) >= 3 and "://" not in source and not source.startswith((".", "~")):
        owner, repo, *path = pieces
        return f"{hf_endpoint()}/{owner}/{repo}/resolve/main/{'/'.join(path)}"
    raise DownloadError(
        f"{source!r} is neither a URL nor a Hugging Face name.",
        hint="Give an http(s) URL, or owner/repo/file.gguf, e.g. "
        "bartowski/Qwen2.5-0.5B-Instruct-GGUF/Qwen2.5-0.5B-Instruct-Q4_K_M.gguf.",
    )


def file_name(url: str) -> str:
    name = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    if not name or name in (".", ".."):
        raise DownloadError(f"The URL {url} does not end with a file name.")
    return name


def _headers(url: str) -> dict[str, str]:
    """A Hugging Face token (gated and private repos) goes to Hugging Face only; httpx drops it
    on a redirect to another host (the CDN)."""
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if token and urlsplit(url).netloc == urlsplit(hf_endpoint()).netloc:
        return {"Authorization": f"Bearer {token}"}
    return {}


def check_sha256(value: str) -> str:
    if not _HEX64.match(value.strip()):
        raise DownloadError(f"{value!r} is not a SHA-256 (64 hexadecimal digits).")
    return value.strip().lower()


@dataclass(frozen=True)
class Pulled:
    entry: ModelEntry
    info: GGUFInfo
    url: str
    checksum_source: str | None  # where the expected SHA-256 came from; None: none was published
    resumed_from: int  # bytes already there when this run started
    downloaded: int  # bytes fetched by this run


class Downloader:
    def __init__(
        self, client: httpx.Client | None = None, *, retries: int = 3, backoff_s: float = 1.0
    ) -> None:
        self.client = client or httpx.Client(
            follow_redirects=True,
            timeout=httpx.Timeout(30.0, connect=15.0),
            headers={"User-Agent": "assistant (model pull)"},
        )
        self.retries, self.backoff_s = retries, backoff_s

    def close(self) -> None:
        self.client.close()

    # the expected checksum ----------------------------------------------------------------------

    def sidecar_sha256(self, url: str) -> str | None:
        """The first word of `URL.sha256`, when the server has one."""
        try:
            response = self.client.get(url + ".sha256", headers=_headers(url))
        except httpx.HTTPError:
            return None  # the download itself reports an unreachable server
        if response.status_code != 200 or len(response.content) > 4096:
            return None
        words = response.text.split()
        return words[0].lower() if words and _HEX64.match(words[0]) else None

    # the download -------------------------------------------------------------------------------

    def fetch(
        self, url: str, target: Path, progress: Progress | None = None
    ) -> tuple[str, str | None, int, int]:
        """Download `url` to `target` (via target.part), resuming a partial download. Returns the
        SHA-256, the server's own SHA-256 if it sent one, bytes there before, bytes fetched."""
        part = target.with_name(target.name + ".part")
        meta_file = target.with_name(target.name + ".part.json")
        meta = _read_meta(meta_file)
        if meta.get("url") != url:  # another file of the same name: start afresh
            part.unlink(missing_ok=True)
            meta = {"url": url}
        digest = hashlib.sha256()
        start = _hash_existing(part, digest, progress)
        resumed_from, fetched, attempt = start, 0, 0
        server_sha: str | None = meta.get("sha256")
        while True:
            try:
                done, server_sha = self._stream(url, part, meta, meta_file, digest, progress)
                fetched += done
                break
            except _Restart:
                digest = hashlib.sha256()
                resumed_from = 0
                continue
            except _Transient as exc:
                fetched += exc.fetched
                attempt += 1
                if attempt > self.retries:
                    have = part.stat().st_size if part.exists() else 0
                    total = meta.get("total")
                    of = f" of {total:,}" if total else ""
                    raise DownloadError(
                        f"The download of {url} stopped at {have:,}{of} bytes: {exc}.",
                        hint="Run the same command again: it resumes where it stopped.",
                    ) from exc.__cause__
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
        return digest.hexdigest(), server_sha, resumed_from, fetched

    def _stream(self, url: str, part: Path, meta: dict, meta_file: Path, digest: Any,
                progress: Progress | None) -> tuple[int, str | None]:
        have = part.stat().st_size if part.exists() else 0
        headers = _headers(url)
        if have:
            headers["Range"] = f"bytes={have}-"
            if meta.get("validator"):
                headers["If-Range"] = meta["validator"]
        fetched = 0
        try:
            with self.client.stream("GET", url, headers=headers) as response:
                if response.status_code == 416 and have and have == meta.get("total"):
                    return 0, meta.get("sha256")  # already complete
                if response.status_code == 416:
                    part.unlink(missing_ok=True)
                    raise _Restart
                _raise_for_status(response, url)
                if have and response.status_code == 200:
                    # The server ignored the range, or the file changed: start over.
                    part.unlink(missing_ok=True)
                    raise _Restart
                if response.status_code == 206 and not _range_starts_at(response, have):
                    part.unlink(missing_ok=True)
                    raise _Restart
                total = _total_size(response, have)
                validator = response.headers.get("etag") or response.headers.get("last-modified")
                # Hugging Face sends the SHA-256 of an LFS file as its linked ETag.
                linked = response.headers.get("x-linked-etag", "").strip('"')
                server_sha = linked.lower() if _HEX64.match(linked) else meta.get("sha256")
                meta.update(total=total, validator=validator, sha256=server_sha)
                _write_meta(meta_file, meta)
                _check_space(part.parent, total, have, url)
                with part.open("ab") as out:
                    for block in response.iter_bytes(CHUNK):
                        if have == 0 and fetched == 0 and block[:4] != MAGIC[: len(block[:4])]:
                            raise DownloadError(
                                f"{url} is not a GGUF file (it starts with {block[:16]!r}).",
                                hint="Check the URL: it may point to a web page, not to the file itself.",
                            )
                        out.write(block)
                        digest.update(block)
                        fetched += len(block)
                        if progress is not None:
                            progress("downloading", have + fetched, total)
        except httpx.TransportError as exc:
            raise _Transient(str(exc) or type(exc).__name__, fetched) from exc
        except OSError as exc:
            raise DownloadError(
                f"Cannot write {part}: {exc.strerror}.",
                hint="Free some space and run the same command again: it resumes where it stopped.",
            ) from exc
        size = part.stat().st_size
        if total is not None and size < total:
            raise _Transient(f"the connection closed after {size:,} of {total:,} bytes", fetched)
        if total is not None and size > total:
            part.unlink(missing_ok=True)
            raise _Restart
        return fetched, server_sha


class _Restart(Exception):
    """Throw the partial file away and download from the first byte."""


class _Transient(Exception):
    def __init__(self, reason: str, fetched: int) -> None:
        super().__init__(reason)
        self.fetched = fetched


def _read_meta(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_meta(path: Path, meta: dict) -> None:
    path.write_text(json.dumps(meta), encoding="utf-8")


def _hash_existing(part: Path, digest: Any, progress: Progress | None) -> int:
    if not part.exists():
        return 0
    total, done = part.stat().st_size, 0
    with part.open("rb") as fh:
        while block := fh.read(CHUNK):
            digest.update(block)
            done += len(block)
            if progress is not None:
                progress("checking", done, total)
    return done


def _range_starts_at(response: httpx.Response, start: int) -> bool:
    match = re.match(r"bytes (\d+)-", response.headers.get("content-range", ""))
    return bool(match) and int(match.group(1)) == start


def _total_size(response: httpx.Response, have: int) -> int | None:
    match = re.match(r"bytes \d+-\d+/(\d+)", response.headers.get("content-range", ""))
    if match:
        return int(match.group(1))
    length = response.headers.get("content-length")
    return have + int(length) if length and length.isdigit() else None


def _check_space(folder: Path, total: int | None, have: int, url: str) -> None:
    if total is None:
        return
    free = shutil.disk_usage(folder).free
    if total - have > free:
        raise DownloadError(
            f"{file_name(url)} needs {(total - have) / 1e9:.1f} GB more, but {folder} has "
            f"{free / 1e9:.1f} GB free.",
            hint="Free some space (or set ASSISTANT_HOME to a larger disk) and run the command again.",
        )


def _raise_for_status(response: httpx.Response, url: str) -> None:
    status = response.status_code
    if status < 400:
        return
    hint = "Check the URL."
    if status in (401, 403):
        hint = ("The file is private or gated: accept its terms on its page and set HF_TOKEN."
                if urlsplit(url).netloc == urlsplit(hf_endpoint()).netloc else "The server refused access.")
    elif status == 404:
        hint = "Check the name: owner/repo/file.gguf, exactly as on the repository's file list."
    elif status >= 500 or status == 429:
        raise _Transient(f"the server answered {status}", 0)
    raise DownloadError(f"Downloading {url} failed: HTTP {status}.", hint=hint, status=status)


def pull(
    source: str,
    *,
    name: str | None = None,
    sha256: str | None = None,
    progress: Progress | None = None,
    downloader: Downloader | None = None,
    registry: Registry | None = None,
) -> Pulled:
    """Download `source` (a URL or owner/repo/file.gguf) into the models folder, check it, and
    register it. Nothing is registered unless the checksum (when known) and the header are right."""
    url = expand_source(source)
    filename = file_name(url)
    registry = registry or Registry()
    name = check_name(name or Path(filename).stem)
    if registry.get(name) is not None:
        raise ModelError(
            f"A model named {name!r} is already registered ({registry.find(name).path}).",
            hint="Choose another name with --name, or `assistant models remove` it first.",
        )
    expected = check_sha256(sha256) if sha256 else None
    folder = ensure_private_dir(models_folder())
    target = folder / filename
    if target.exists():
        raise ModelError(
            f"{target} already exists.",
            hint=f"Register it with `assistant models add {target}`, or delete it to download again.",
        )
    own = downloader is None
    downloader = downloader or Downloader()
    lock = filelock.FileLock(str(folder / ".pull.lock"), timeout=0)
    try:
        with lock:
            checksum_source = "--sha256" if expected else None
            if expected is None and (expected := downloader.sidecar_sha256(url)):
                checksum_source = f"{url}.sha256"
            digest, server_sha, resumed_from, fetched = downloader.fetch(url, target, progress)
            if expected is None and server_sha:
                expected, checksum_source = server_sha, "the server (X-Linked-Etag)"
            part = target.with_name(target.name + ".part")
            if expected is not None and digest != expected:
                _discard(target)
                raise DownloadError(
                    f"The SHA-256 of {filename} is {digest}, not {expected} (from {checksum_source}): "
                    "the download was deleted and nothing was registered.",
                    hint="The file on the server is not the one expected: check the URL and the checksum.",
                )
            try:
                read_gguf(part)
            except InvalidModelError as exc:
                _discard(target)
                raise InvalidModelError(
                    f"{url} downloaded, but it is not a usable GGUF model: {exc.message}",
                    hint="Nothing was registered; check the URL.",
                ) from exc
            os.replace(part, target)
            target.with_name(target.name + ".part.json").unlink(missing_ok=True)
    except filelock.Timeout as exc:
        raise DownloadError(
            "Another `assistant models pull` is downloading right now.",
            hint="Wait for it to finish, then run this one again.",
        ) from exc
    finally:
        if own:
            downloader.close()
    entry, info = registry.add(target, name=name, sha256=digest, source=url, managed=True)
    return Pulled(entry, info, url, checksum_source, resumed_from, fetched)


def _discard(target: Path) -> None:
    for suffix in (".part", ".part.json"):
        target.with_name(target.name + suffix).unlink(missing_ok=True)
