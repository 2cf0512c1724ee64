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
from engine.registry import ModelEntry, Registry, check_name, hash_into, models_folder

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

    def fetch(self, url: str, target: Path, progress: Progress | None = None) -> _Transfer:
        """Download `url` to `target`.part, resuming a partial download; retries transient
        failures (a dropped connection, 5xx, 429) with backoff, each time from where it stopped."""
        transfer = _Transfer(url, target, progress)
        attempt = 0
        while True:
            try:
                self._stream(transfer)
                return transfer
            except _Transient as exc:
                attempt += 1
                if attempt > self.retries:
                    have = transfer.part.stat().st_size if transfer.part.exists() else 0
                    total = transfer.meta.get("total")
                    of = f" of {total:,}" if total else ""
                    if not have:  # nothing kept (the host unknown, unreachable): nothing to resume
                        raise DownloadError(
                            f"The download of {url} failed before any of it arrived: {exc}.",
                            hint="Check the address and the network connection, then run the same "
                                 "command again.",
                        ) from exc.__cause__
                    raise DownloadError(
                        f"The download of {url} stopped at {have:,}{of} bytes: {exc}.",
                        hint="Run the same command again: it resumes where it stopped.",
                    ) from exc.__cause__
                time.sleep(self.backoff_s * 2 ** (attempt - 1))

    def _stream(self, t: _Transfer) -> None:
        have = t.part.stat().st_size if t.part.exists() else 0
        headers = _headers(t.url)
        if have:
            headers["Range"] = f"bytes={have}-"
            if t.meta.get("validator"):
                headers["If-Range"] = t.meta["validator"]  # a changed file comes back whole (200)
        try:
            with self.client.stream("GET", t.url, headers=headers) as response:
                if response.status_code == 416:
                    if have and have == t.meta.get("total"):
                        return  # it was complete already
                    t.start_over()
                    raise _Transient("the server refused the range; starting over")
                _raise_for_status(response, t.url)
                if response.status_code == 206 and not _range_starts_at(response, have):
                    t.start_over()
                    raise _Transient("the server sent another range than asked; starting over")
                if have and response.status_code == 200:
                    # The server ignored the range, or the file changed: this response is the
                    # whole file, so the partial one goes.
                    t.start_over()
                    have = 0
                total = _total_size(response, have)
                validator = response.headers.get("etag") or response.headers.get("last-modified")
                # Hugging Face sends the SHA-256 of an LFS file as its linked ETag.
                linked = response.headers.get("x-linked-etag", "").strip('"')
                t.meta.update(url=t.url, total=total, validator=validator,
                              sha256=linked.lower() if _HEX64.match(linked) else None)
                _write_meta(t.meta_file, t.meta)
                _check_space(t.part.parent, total, have, t.url)
                not_gguf = None
                with t.part.open("ab") as out:
                    for block in response.iter_bytes():  # as it arrives: a cut loses nothing
                        if have == 0 and out.tell() == 0 and not MAGIC.startswith(block[:4]):
                            not_gguf = block[:16]
                            break
                        out.write(block)
                        t.digest.update(block)
                        t.fetched += len(block)
                        if t.progress is not None:
                            t.progress("downloading", out.tell(), total)
                if not_gguf is not None:
                    t.start_over()
                    t.meta_file.unlink(missing_ok=True)
                    raise DownloadError(
                        f"{t.url} is not a GGUF file (it starts with {not_gguf!r}).",
                        hint="Check the URL: it may point to a web page, not to the file itself.",
                    )
        except httpx.TransportError as exc:
            raise _Transient(str(exc) or type(exc).__name__) from exc
        except OSError as exc:
            raise DownloadError(
                f"Cannot write {t.part}: {exc.strerror}.",
                hint="Free some space and run the same command again: it resumes where it stopped.",
            ) from exc
        size = t.part.stat().st_size
        if total is not None and size < total:
            raise _Transient(f"the connection closed after {size:,} of {total:,} bytes")
        if total is not None and size > total:
            t.start_over()
            raise _Transient(f"the server sent {size:,} bytes, not {total:,}; starting over")


class _Transfer:
    """One file's download: the partial file, what the server said about it, and the running
    SHA-256 of what is on disk."""

    def __init__(self, url: str, target: Path, progress: Progress | None) -> None:
        self.url, self.progress = url, progress
        self.part = target.with_name(target.name + ".part")
        self.meta_file = target.with_name(target.name + ".part.json")
        self.meta = _read_meta(self.meta_file)
        if self.meta.get("url") != url:  # another file of the same name: start afresh
            self.part.unlink(missing_ok=True)
            self.meta = {"url": url}
        self.digest = hashlib.sha256()
        self.resumed_from = _hash_existing(self.part, self.digest, progress)
        self.fetched = 0

    @property
    def sha256(self) -> str:
        return self.digest.hexdigest()

    @property
    def server_sha256(self) -> str | None:
        return self.meta.get("sha256")

    def start_over(self) -> None:
        self.part.unlink(missing_ok=True)
        self.digest = hashlib.sha256()
        self.resumed_from = 0


class _Transient(Exception):
    """Worth another try, from where it stopped."""


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
    checking = None if progress is None else (lambda done, total: progress("checking", done, total))
    return hash_into(digest, part, checking, CHUNK)


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
        raise _Transient(f"the server answered {status}")
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
            transfer = downloader.fetch(url, target, progress)
            digest = transfer.sha256
            if expected is None and transfer.server_sha256:
                expected, checksum_source = transfer.server_sha256, "the server (X-Linked-Etag)"
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
    return Pulled(entry, info, url, checksum_source, transfer.resumed_from, transfer.fetched)


def _discard(target: Path) -> None:
    for suffix in (".part", ".part.json"):
        target.with_name(target.name + suffix).unlink(missing_ok=True)
