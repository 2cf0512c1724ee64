"""Models: the registry, `models pull` from a real HTTP server on 127.0.0.1, hostile GGUF files,
the hardware fit, GPU build advice, and swapping models in the app."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine import hardware
from engine.backends.local import LocalBackend
from engine.download import Downloader, expand_source, pull
from engine.errors import DownloadError, InvalidModelError, ModelError, ModelNotFoundError
from engine.fit import Fit, GiB, Hardware, MiB, ModelShape, choose_fit
from engine.gguf import read_gguf
from engine.models import resolve_model
from engine.registry import Registry, models_folder
from tests.file_server import FileServer, Served
from tests.gguf_files import ARRAY, U32, big_model, gguf, llama_metadata, string

ASSISTANT = [sys.executable, "-m", "app"]


def run(*args: str, check: bool = True, env: dict[str, str] | None = None,
        input: str | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run([*ASSISTANT, *args], capture_output=True, text=True, timeout=180, input=input,
                          env={**os.environ, "ASSISTANT_TEMPERATURE": "0", "ASSISTANT_SEED": "42",
                               "ASSISTANT_MAX_TOKENS": "16", **(env or {})})
    if check:
        assert done.returncode == 0, done.stderr
    return done


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def quick() -> Downloader:
    return Downloader(retries=0, backoff_s=0)


def leftovers() -> list[str]:
    folder = models_folder()
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) if folder.exists() else []


@pytest.fixture
def server():
    with FileServer() as s:
        yield s


# pull ---------------------------------------------------------------------------------------------


def test_pull_checks_the_sidecar_checksum_and_registers_the_file(server: FileServer) -> None:
    data = big_model(1)
    server.files["/m/tiny.gguf"] = Served(data)
    server.files["/m/tiny.gguf.sha256"] = Served(f"{sha(data)}  tiny.gguf\n".encode())
    pulled = pull(f"{server.url}/m/tiny.gguf", downloader=quick())
    assert pulled.checksum_source == f"{server.url}/m/tiny.gguf.sha256"
    entry = Registry().find("tiny")
    assert entry.sha256 == sha(data) and entry.managed and entry.source == f"{server.url}/m/tiny.gguf"
    assert Path(entry.path) == models_folder() / "tiny.gguf"
    assert Path(entry.path).read_bytes() == data
    assert leftovers() == ["tiny.gguf"]  # no .part, no .part.json
    assert resolve_model("tiny") == Path(entry.path)


def test_interrupted_download_resumes_where_it_stopped(server: FileServer) -> None:
    data = big_model(2)
    cut = len(data) * 2 // 5
    server.files["/m/big.gguf"] = Served(data, drop_after=[cut])
    with pytest.raises(DownloadError, match=r"stopped at .* bytes.*Run the same command again"):
        pull(f"{server.url}/m/big.gguf", downloader=quick())
    assert (models_folder() / "big.gguf.part").stat().st_size == cut
    assert Registry().get("big") is None

    pulled = pull(f"{server.url}/m/big.gguf", sha256=sha(data), downloader=quick())
    resumed = server.gets("/m/big.gguf")[-1]["headers"]
    assert resumed["Range"] == f"bytes={cut}-"
    assert resumed["If-Range"] == server.files["/m/big.gguf"].tag()  # only if unchanged
    assert (pulled.resumed_from, pulled.downloaded) == (cut, len(data) - cut)
    assert pulled.checksum_source == "--sha256"
    assert (models_folder() / "big.gguf").read_bytes() == data
    assert Registry().find("big").sha256 == sha(data)
    assert leftovers() == ["big.gguf"]


def test_a_pull_that_got_nothing_does_not_promise_to_resume() -> None:
    import socket

    with socket.socket() as closed:  # a port nobody listens on: fails at 0 bytes, like a DNS failure
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/m/none.gguf"
    with pytest.raises(DownloadError) as failed:
        pull(url, downloader=quick())
    assert f"The download of {url} failed before any of it arrived" in str(failed.value)
    assert "Check the address and the network connection" in str(failed.value)
    assert "resume" not in str(failed.value)
    assert Registry().get("none") is None and not (models_folder() / "none.gguf.part").exists()


def test_ctrl_c_stops_a_pull_and_the_same_command_resumes_it(server: FileServer) -> None:
    data = big_model(2)
    server.files["/m/slow.gguf"] = Served(data, pace_s=0.05)  # 2 MiB in about 1.6 s
    part = models_folder() / "slow.gguf.part"
    url = f"{server.url}/m/slow.gguf"
    proc = subprocess.Popen([*ASSISTANT, "models", "pull", url], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 60
    while not (part.exists() and part.stat().st_size > 300_000):
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Run the same command again to resume from there." in err
    kept = part.stat().st_size
    assert 300_000 <= kept < len(data) and Registry().get("slow") is None

    server.files["/m/slow.gguf"].pace_s = 0
    done = run("models", "pull", url)
    assert "Resumed at" in done.stderr and "Registered slow" in done.stdout
    assert server.gets("/m/slow.gguf")[-1]["headers"]["Range"] == f"bytes={kept}-"
    assert (models_folder() / "slow.gguf").read_bytes() == data


def test_ctrl_c_before_any_byte_arrived_does_not_promise_to_resume() -> None:
    import socket

    with socket.socket() as silent:  # accepts the connection (the kernel does) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/m/never.gguf"
        proc = subprocess.Popen([*ASSISTANT, "models", "pull", url], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        time.sleep(3)  # started, connected, waiting for a first byte
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Stopped before any of it arrived." in err and "resume" not in err


def test_a_dropped_connection_is_resumed_within_one_pull(server: FileServer) -> None:
    data = big_model(2)
    server.files["/m/flaky.gguf"] = Served(data, drop_after=[100_000, 900_000])
    pulled = pull(f"{server.url}/m/flaky.gguf", downloader=Downloader(retries=3, backoff_s=0))
    ranges = [r["headers"].get("Range") for r in server.gets("/m/flaky.gguf")]
    assert ranges == [None, "bytes=100000-", "bytes=1000000-"]
    assert pulled.entry.sha256 == sha(data) and pulled.downloaded == len(data)


def test_a_file_changed_on_the_server_is_downloaded_again_not_spliced(server: FileServer) -> None:
    old, new = big_model(1), gguf(llama_metadata(context=4096), [("blk.0.w", (256, 1024), 0)])
    server.files["/m/v.gguf"] = Served(old, drop_after=[300_000])
    with pytest.raises(DownloadError):
        pull(f"{server.url}/m/v.gguf", downloader=quick())
    server.files["/m/v.gguf"] = Served(new)  # another ETag now
    pulled = pull(f"{server.url}/m/v.gguf", sha256=sha(new), downloader=quick())
    again = server.gets("/m/v.gguf")[-1]["headers"]
    assert again["Range"] == "bytes=300000-" and again["If-Range"] != server.files["/m/v.gguf"].tag()
    assert pulled.resumed_from == 0 and pulled.downloaded == len(new)  # the whole new file, once
    assert read_gguf(pulled.entry.file).context_length == 4096


def test_a_server_that_ignores_range_gets_a_fresh_download(server: FileServer) -> None:
    data = big_model(1)
    server.files["/m/r.gguf"] = Served(data, drop_after=[50_000], ignore_range=True)
    with pytest.raises(DownloadError):
        pull(f"{server.url}/m/r.gguf", downloader=quick())
    pulled = pull(f"{server.url}/m/r.gguf", downloader=quick())
    assert pulled.entry.file.read_bytes() == data


@pytest.mark.parametrize("where", ["--sha256", "sidecar", "x-linked-etag"])
def test_a_wrong_checksum_is_refused_and_nothing_is_registered(server: FileServer, where: str) -> None:
    data = big_model(1)
    wrong = sha(b"something else")
    server.files["/m/bad.gguf"] = Served(data, linked_etag=wrong if where == "x-linked-etag" else None)
    if where == "sidecar":
        server.files["/m/bad.gguf.sha256"] = Served(wrong.encode())
    with pytest.raises(DownloadError, match=f"SHA-256 of bad.gguf is {sha(data)}, not {wrong}.*nothing was registered"):
        pull(f"{server.url}/m/bad.gguf", sha256=wrong if where == "--sha256" else None, downloader=quick())
    assert Registry().entries() == []
    assert leftovers() == []  # the bad download is deleted, not resumed later


def test_a_web_page_instead_of_a_model_is_refused_early(server: FileServer) -> None:
    server.files["/m/page.gguf"] = Served(b"<!DOCTYPE html><html>" + b"x" * 100_000)
    with pytest.raises(DownloadError, match="is not a GGUF file.*DOCTYPE"):
        pull(f"{server.url}/m/page.gguf", downloader=quick())
    assert Registry().entries() == [] and leftovers() == []


def test_a_downloaded_file_with_a_damaged_header_is_refused(server: FileServer) -> None:
    data = big_model(1)
    server.files["/m/cut.gguf"] = Served(data[: len(data) // 2])  # complete transfer of half a model
    with pytest.raises(InvalidModelError, match="not a usable GGUF model.*truncated"):
        pull(f"{server.url}/m/cut.gguf", downloader=quick())
    assert Registry().entries() == [] and leftovers() == []


def test_http_errors_say_what_to_do(server: FileServer, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DownloadError, match="HTTP 404.*Check the name") as err:
        pull(f"{server.url}/nope/missing.gguf", downloader=quick())
    assert err.value.status == 404
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    server.files["/org/gated/resolve/main/m.gguf"] = Served(b"", status=403)
    with pytest.raises(DownloadError, match="HTTP 403.*gated.*HF_TOKEN"):
        pull("org/gated/m.gguf", downloader=quick())


def test_hugging_face_short_names(server: FileServer, monkeypatch: pytest.MonkeyPatch) -> None:
    assert expand_source("bartowski/Qwen2.5-0.5B-Instruct-GGUF/Qwen2.5-0.5B-Instruct-Q4_K_M.gguf") == (
        "https://huggingface.co/bartowski/Qwen2.5-0.5B-Instruct-GGUF/resolve/main/Qwen2.5-0.5B-Instruct-Q4_K_M.gguf")
    assert expand_source("hf://o/r/sub/dir/m.gguf") == "https://huggingface.co/o/r/resolve/main/sub/dir/m.gguf"
    assert expand_source("https://huggingface.co/o/r/blob/main/m.gguf") == "https://huggingface.co/o/r/resolve/main/m.gguf"
    assert expand_source("https://example.org/blob/m.gguf") == "https://example.org/blob/m.gguf"
    with pytest.raises(DownloadError, match="neither a URL nor a Hugging Face name"):
        expand_source("just-a-name.gguf")

    # Against a mirror (HF_ENDPOINT), the way Hugging Face serves LFS files: the SHA-256 as ETag.
    data = big_model(1)
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_TOKEN", "hf_secret_token")
    server.files["/org/repo/resolve/main/m.gguf"] = Served(data, linked_etag=sha(data))
    pulled = pull("org/repo/m.gguf", downloader=quick())
    assert pulled.checksum_source == "the server (X-Linked-Etag)"
    assert pulled.url == f"{server.url}/org/repo/resolve/main/m.gguf"
    assert server.gets("/org/repo/resolve/main/m.gguf")[0]["headers"]["Authorization"] == "Bearer hf_secret_token"


def test_the_token_is_not_sent_to_other_hosts(server: FileServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_secret_token")
    server.files["/m/t.gguf"] = Served(big_model(1))
    pull(f"{server.url}/m/t.gguf", downloader=quick())
    assert all("Authorization" not in r["headers"] for r in server.requests)


def test_pull_refuses_a_taken_name_before_downloading(server: FileServer, model_path: Path) -> None:
    Registry().add(model_path, name="tiny")
    server.files["/m/tiny.gguf"] = Served(big_model(1))
    with pytest.raises(ModelError, match="already registered"):
        pull(f"{server.url}/m/tiny.gguf", downloader=quick())
    assert server.requests == []


def test_pull_on_the_command_line_then_ask_with_the_model(server: FileServer, model_path: Path, home: Path) -> None:
    """The whole flow as a user runs it: pull (progress bar, sidecar), list, info, use, ask, remove."""
    data = model_path.read_bytes()
    server.files["/models/SmolLM2-pulled.gguf"] = Served(data)
    server.files["/models/SmolLM2-pulled.gguf.sha256"] = Served(sha(data).encode())
    done = run("models", "pull", f"{server.url}/models/SmolLM2-pulled.gguf", "--name", "smol")
    assert "SHA-256 verified against" in done.stdout and "Registered smol: llama, 135M parameters, Q4_1" in done.stdout

    listed = json.loads(run("models", "list", "--json").stdout)
    smol = next(r for r in listed if r["name"] == "smol")
    assert smol["source"].startswith("pulled from") and smol["quantization"] == "Q4_1" and not smol["default"]
    assert next(r for r in listed if r["source"] == "embedded")["default"]

    info = json.loads(run("models", "info", "smol", "--json").stdout)
    assert (info["architecture"], info["quantization"], info["context_length"], info["chat_template"]) == (
        "llama", "Q4_1", 8192, True)
    assert info["parameters"] == 134_515_008 and info["sha256"] == sha(data)
    assert info["memory"]["kv_cache"] == 90 * MiB  # llama.cpp reports 90.00 MiB at n_ctx 4096

    assert "smol is now the default model" in run("models", "use", "smol").stdout
    assert [r["name"] for r in json.loads(run("models", "list", "--json").stdout) if r["default"]] == ["smol"]
    asked = run("ask", "--stats", "Say hi")
    assert asked.stdout.strip()
    conn = __import__("sqlite3").connect(home / "assistant.db")
    assert conn.execute("SELECT model FROM responses").fetchone()[0] == "SmolLM2-pulled"
    conn.close()

    removed = run("models", "remove", "smol", "--yes")
    assert "deleted" in removed.stdout and "embedded one again" in removed.stdout
    assert not (models_folder() / "SmolLM2-pulled.gguf").exists()
    assert run("models", "info", "smol", check=False).returncode == 1


# the registry -------------------------------------------------------------------------------------


def test_add_use_remove(model_path: Path, tmp_path: Path) -> None:
    link = tmp_path / "mine.gguf"
    link.symlink_to(model_path)
    registry = Registry()
    entry, info = registry.add(link)
    assert entry.name == "mine" and not entry.managed and entry.sha256 == sha(model_path.read_bytes())
    assert info.architecture == "llama"
    with pytest.raises(ModelError, match="already registered as 'mine'"):
        registry.add(link, name="again")
    with pytest.raises(ModelError, match="cannot name a model"):
        registry.add(model_path, name="a/b")
    registry.use("mine")
    assert resolve_model(None) == link
    assert LocalBackend().model_name == "mine"  # the default, before loading
    with pytest.raises(ModelNotFoundError, match="No model named 'other' is registered.*Registered: mine"):
        registry.use("other")
    _, deleted = registry.remove("mine")
    assert not deleted and link.exists()  # added files are the user's: never deleted
    assert registry.default is None and resolve_model(None) == model_path


def test_a_registered_file_that_vanished_is_reported(model_path: Path, tmp_path: Path) -> None:
    copy = tmp_path / "gone.gguf"
    copy.write_bytes(model_path.read_bytes())
    Registry().add(copy)
    Registry().use("gone")
    copy.unlink()
    with pytest.raises(ModelNotFoundError, match="registered at .*gone.gguf, but that file is gone.*models remove gone"):
        resolve_model(None)


def test_a_damaged_registry_is_reported_not_overwritten(home: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "models.json").write_text("{not json")
    with pytest.raises(ModelError, match="models.json is damaged"):
        Registry().entries()
    done = run("models", "list", check=False)
    assert done.returncode == 1 and "models.json is damaged" in done.stderr and "Traceback" not in done.stderr
    assert (home / "models.json").read_text() == "{not json"


def test_add_copy_and_remove_deletes_the_copy(model_path: Path) -> None:
    done = run("models", "add", str(model_path), "--copy", "--name", "copied", "--use")
    assert "copied is now the default model" in done.stdout
    copy = models_folder() / model_path.name
    assert copy.read_bytes() == model_path.read_bytes()
    declined = run("models", "remove", "copied", check=False, input="n\n")  # it asks first
    assert declined.returncode == 1 and f"Delete {copy} (98 MB)?" in declined.stdout
    assert copy.exists() and Registry().get("copied") is not None
    run("models", "remove", "copied", "--yes")
    assert not copy.exists() and model_path.exists()


def test_use_warns_when_the_config_overrides_it(model_path: Path, home: Path) -> None:
    Registry().add(model_path, name="smol")
    done = run("models", "use", "smol", env={"ASSISTANT_MODEL": str(model_path)})
    assert "wins over this default" in done.stderr


def test_info_reads_the_header_without_loading_the_weights(model_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import llama_cpp
    from click.testing import CliRunner

    from app.cli import main

    def never(*args, **kwargs):
        raise AssertionError("llama_cpp.Llama was constructed")

    monkeypatch.setattr(llama_cpp, "Llama", never)
    result = CliRunner().invoke(main, ["models", "info", str(model_path), "--n-ctx", "8192"])
    assert result.exit_code == 0, result.output
    assert "parameters       135M (134,515,008)" in result.output
    assert "KV cache 180 MiB at n_ctx 8192" in result.output
    assert "chat template    present" in result.output


# hostile files --------------------------------------------------------------------------------------


def _hostile_cases(model_path: Path) -> dict[str, tuple[bytes, str]]:
    real = model_path.read_bytes()
    header = b"GGUF" + struct.pack("<IQQ", 3, 1, 1)
    return {
        "zero-length": (b"", "is empty (0 bytes)"),
        "wrong magic": (b"GGML" + real[4:4096], "not a GGUF model"),
        "html": (b"<html><body>Not Found</body></html>\n" * 20, "not a GGUF model"),
        "truncated header": (real[:20_000], "damaged or truncated"),
        "truncated data": (real[: len(real) - 1000], "truncated: its tensors need 1,000 more bytes"),
        "absurd tensor count": (b"GGUF" + struct.pack("<IQQ", 3, 2**60, 0), "not plausible"),
        "absurd metadata count": (b"GGUF" + struct.pack("<IQQ", 3, 0, 2**63), "not plausible"),
        "absurd string length": (header + struct.pack("<Q", 2**62) + b"key", "past the end"),
        "absurd array length": (b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + string("k")
                                + struct.pack("<IIQ", ARRAY, U32, 2**40), "not plausible"),
        "array of arrays": (b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + string("k")
                            + struct.pack("<IIQ", ARRAY, ARRAY, 1), "unsupported type"),
        "unknown value type": (b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + string("k") + struct.pack("<I", 99),
                               "unknown value type 99"),
        "absurd dimensions": (gguf(tensors=[("t", (4, 4), 0)]).replace(
            string("t") + struct.pack("<I", 2), string("t") + struct.pack("<I", 2**31)), "claims 2147483648 dimensions"),
        "tensor past the end": (gguf(tensors=[("t", (2**40, 2**20), 0)], data=False), "truncated"),
        "misaligned tensor": (gguf(llama_metadata() + [("general.alignment", U32, 64)],
                                   [("a", (3,), 0), ("b", (3,), 0)], alignment=32), "not a multiple of 64"),
        "duplicate tensor": (gguf(tensors=[("t", (8,), 0), ("t", (8,), 0)]), "appears twice"),
        "zero alignment": (gguf(llama_metadata() + [("general.alignment", U32, 0)]), "general.alignment is 0"),
        "version 1": (b"GGUF" + struct.pack("<IQQ", 1, 0, 0), "GGUF version 1"),
        "version 2**31": (b"GGUF" + struct.pack("<IQQ", 2**31, 0, 0), "GGUF version 2147483648"),
        "huge key in tiny file": (header + struct.pack("<Q", 2**20) + b"k" * 100, "past the end"),
    }


HOSTILE = ["zero-length", "wrong magic", "html", "truncated header", "truncated data", "absurd tensor count",
           "absurd metadata count", "absurd string length", "absurd array length", "array of arrays",
           "unknown value type", "absurd dimensions", "tensor past the end", "misaligned tensor",
           "duplicate tensor", "zero alignment", "version 1", "version 2**31", "huge key in tiny file"]


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_files_are_refused_in_a_subprocess_without_crashing(case: str, model_path: Path, tmp_path: Path,
                                                                    home: Path) -> None:
    data, reason = _hostile_cases(model_path)[case]
    path = tmp_path / "hostile.gguf"
    path.write_bytes(data)
    done = run("models", "add", str(path), check=False)
    assert done.returncode == 1, (done.returncode, done.stderr)  # an error, not a signal (-11, -6)
    assert "Traceback" not in done.stderr
    assert str(path) in done.stderr and reason in done.stderr, done.stderr
    assert not (home / "models.json").exists() or Registry().entries() == []


@pytest.mark.parametrize("case", ["truncated data", "misaligned tensor", "duplicate tensor"])
def test_llama_cpp_never_sees_a_hostile_file(case: str, model_path: Path, tmp_path: Path) -> None:
    data, reason = _hostile_cases(model_path)[case]
    path = tmp_path / "hostile.gguf"
    path.write_bytes(data)
    done = run("ask", "--model", str(path), "Say hi", check=False)
    assert done.returncode == 1 and reason in done.stderr and "Traceback" not in done.stderr


def test_the_hostile_cases_take_no_time(model_path: Path, tmp_path: Path) -> None:
    for case, (data, _) in _hostile_cases(model_path).items():
        path = tmp_path / "h.gguf"
        path.write_bytes(data)
        started = time.perf_counter()
        with pytest.raises(InvalidModelError):
            read_gguf(path)
        assert time.perf_counter() - started < 0.5, case


# the hardware fit ---------------------------------------------------------------------------------

# A 7B-like Q4 model in round numbers: 32 layers of 120 MiB, a 100 MiB output head, 70 MiB of
# token embeddings; KV 4 KiB per token and layer (8 KV heads x 128 x 2 x f16) = 16 MiB per layer
# at n_ctx 4096; compute buffer 512 x (32000 + 4 x 4096) x 4 B = 94.5 MiB.
SEVEN_B = ModelShape(n_layers=32, layer_bytes=120 * MiB, output_bytes=100 * MiB, other_bytes=70 * MiB,
                     kv_bytes_per_token_layer=4096, n_vocab=32000, n_embd=4096, n_head=32, n_ctx_train=32768)


def gpu(free_mib: int | None, ram_gib: float = 32) -> Hardware:
    return Hardware(gpu_offload=True, vram_free=None if free_mib is None else free_mib * MiB,
                    vram_total=24 * GiB, ram_available=int(ram_gib * GiB), ram_total=64 * GiB)


def cpu(ram_gib: float) -> Hardware:
    return Hardware(gpu_offload=False, ram_available=int(ram_gib * GiB), ram_total=64 * GiB)


def mac(available_gib: float, total_gib: float) -> Hardware:
    return Hardware(gpu_offload=True, unified_memory=True, ram_available=int(available_gib * GiB),
                    ram_total=int(total_gib * GiB))


FIT_TABLE = [
    # hardware, n_ctx asked, n_gpu_layers set, -> layers, n_ctx, fits, words in the reason
    ("CPU build, 16 GiB RAM", cpu(16), 4096, None, 0, 4096, True, "CPU only"),
    ("8 GiB free VRAM: all", gpu(8192), 4096, None, -1, 4096, True, "every layer fits"),
    # budget 4096-512 = 3584 MiB; 25 x (120+16) + 94.5 = 3494.5 fits, 26 layers 3630.5 do not
    ("4 GiB free VRAM: partial", gpu(4096), 4096, None, 25, 4096, True, "partial offload: 25 of 32"),
    ("1 GiB free VRAM: 3 layers", gpu(1024), 4096, None, 3, 4096, True, "partial offload: 3 of 32"),
    ("512 MiB free VRAM: CPU", gpu(512), 4096, None, 0, 4096, True, "not even one layer"),
    ("VRAM unknown: all", gpu(None), 4096, None, -1, 4096, True, "free GPU memory unknown"),
    # RAM budget 5.5 GiB: 8192 needs 4010 + 1024 KV + 94.5 = 5128.5 MiB; 16384 needs 6152.5
    ("CPU, 6.5 GiB RAM: context lowered", cpu(6.5), 32768, None, 0, 8192, True, "lowered from 32768 to 8192"),
    ("CPU, 4 GiB RAM: too big, minimum context", cpu(4), 4096, None, 0, 512, False, "page from disk"),
    ("above the trained context: capped", cpu(64), 65536, None, 0, 32768, True, "capped at the model's trained"),
    # 25 layers on the GPU leave 1122 MiB for RAM > 1 GiB budget; at 2048: 27 on GPU, 810 MiB in RAM
    ("4 GiB VRAM, 2 GiB RAM: partial and shorter", gpu(4096, ram_gib=2), 4096, None, 27, 2048, True,
     "partial offload: 27 of 32"),
    ("Mac 16 GiB: all on the GPU", mac(12, 16), 4096, None, -1, 4096, True, "every layer fits"),
    ("Mac 8 GiB, 6 free: all", mac(6, 8), 4096, None, -1, 4096, True, "every layer fits"),
    ("Mac 8 GiB, 5 free: does not fit", mac(5, 8), 4096, None, 32, 512, False, "page from disk"),
    ("configured layers kept", gpu(24576), 4096, 10, 10, 4096, True, "as configured"),
    ("configured layers too many for the GPU", gpu(1024), 4096, -1, -1, 4096, False, "needs 4.4 GiB of GPU memory"),
    ("configured layers on a CPU build", cpu(16), 4096, 20, 0, 4096, True, "n_gpu_layers is ignored"),
    ("RAM unknown", Hardware(gpu_offload=False), 4096, None, 0, 4096, None, "free RAM unknown"),
]


@pytest.mark.parametrize(("hw", "n_ctx", "layers", "want_layers", "want_ctx", "fits", "words"),
                         [row[1:] for row in FIT_TABLE], ids=[row[0] for row in FIT_TABLE])
def test_fit_table(hw: Hardware, n_ctx: int, layers: int | None, want_layers: int, want_ctx: int,
                   fits: bool | None, words: str) -> None:
    fit = choose_fit(SEVEN_B, hw, n_ctx, n_gpu_layers=layers, min_ctx=512)
    assert (fit.n_gpu_layers, fit.n_ctx, fit.fits) == (want_layers, want_ctx, fits), fit
    assert words in fit.reason


def test_fit_estimates_match_llama_cpp_on_the_real_model(model_path: Path) -> None:
    shape = ModelShape.from_gguf(read_gguf(model_path))
    # llama.cpp, loading it at n_ctx 4096: "KV self size = 90.00 MiB", "compute buffer size = 98.25 MiB"
    assert shape.kv_bytes(4096) == 90 * MiB
    assert abs(shape.compute_bytes(4096, 512, True) - 98.25 * MiB) < 4 * MiB
    assert shape.n_layers == 30 and shape.weights_bytes == read_gguf(model_path).tensor_bytes
    small = choose_fit(shape, cpu(0.5 + 1), 8192)  # 512 MiB of RAM to spare
    assert small.n_ctx == 8192 and small.fits
    # 92 MiB of weights + 100.5 MiB compute + 22.5 MiB of KV per 1k tokens: 8192 needs 373 MiB,
    # 4096 283 MiB, 2048 238 MiB; with 240 MiB to spare, 2048 it is.
    tight = choose_fit(shape, Hardware(False, ram_available=GiB + 240 * MiB), 8192)
    assert tight.n_ctx == 2048 and tight.fits and "lowered from 8192 to 2048" in tight.reason


def test_two_gpus_add_up_and_integrated_graphics_do_not_count() -> None:
    two = [hardware.GPU("nvidia", "RTX 3060", 12 * GiB, 8 * GiB), hardware.GPU("nvidia", "RTX 3060", 12 * GiB, 6 * GiB)]
    hw = hardware.detect(True, two)
    assert (hw.vram_free, hw.vram_total, hw.gpu_name) == (14 * GiB, 24 * GiB, "RTX 3060, RTX 3060")
    igpu = hardware.detect(True, [hardware.GPU("intel", "intel GPU (card0)")])
    assert igpu.vram_free is None and igpu.gpu_name is None
    assert hardware.detect(True, [hardware.GPU("apple", "arm64 GPU")]).unified_memory


def test_auto_fit_caps_an_impossible_context_and_loads(model_path: Path) -> None:
    backend = LocalBackend(n_ctx=50_000_000)
    asyncio.run(backend.load())
    try:
        assert backend.n_ctx == 8192 and backend.n_gpu_layers == 0
        assert backend.hardware_fit is not None and "capped at the model's trained context 8192" in backend.hardware_fit.reason
    finally:
        backend.close()


# detection and GPU advice -------------------------------------------------------------------------


def test_nvidia_smi_output_is_parsed() -> None:
    out = "NVIDIA GeForce RTX 4090, 24564, 20100\nNVIDIA A100-SXM4-80GB, 81920, [N/A]\n"
    gpus = hardware.parse_nvidia_smi(out)
    assert gpus[0] == hardware.GPU("nvidia", "NVIDIA GeForce RTX 4090", 24564 * MiB, 20100 * MiB)
    assert gpus[1].vram_free is None


def test_sysfs_lists_amd_vram_and_skips_connectors(tmp_path: Path) -> None:
    def card(name: str, vendor: str, total: int | None = None, used: int | None = None) -> None:
        device = tmp_path / name / "device"
        device.mkdir(parents=True)
        (device / "vendor").write_text(vendor + "\n")
        if total is not None:
            (device / "mem_info_vram_total").write_text(str(total))
            (device / "mem_info_vram_used").write_text(str(used))

    card("card0", "0x1002", 16 * GiB, 3 * GiB)
    card("card1", "0x8086")
    card("card0-DP-1", "0x1002")
    card("card2", "0x1af4")  # a virtual display adapter: not a GPU to offload to
    gpus = hardware.sysfs_gpus(tmp_path)
    assert [(g.vendor, g.vram_total, g.vram_free) for g in gpus] == [("amd", 16 * GiB, 13 * GiB), ("intel", None, None)]


def test_ram_from_proc_meminfo(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24684096 kB\nMemFree:        22042324 kB\nMemAvailable:   24201784 kB\n")
    assert hardware._meminfo(meminfo) == (24201784 * 1024, 24684096 * 1024)
    assert hardware._meminfo(tmp_path / "none") == (None, None)
    available, total = hardware.memory()
    assert available and total and 0 < available <= total


@pytest.mark.parametrize(("prefix", "kind"), [
    ("/home/u/.local/share/pipx/venvs/assistant", "pipx"),
    ("/home/u/.local/share/uv/tools/assistant", "uv"),
    ("/srv/app/.venv", "venv"),
])
def test_how_it_was_installed(monkeypatch: pytest.MonkeyPatch, prefix: str, kind: str) -> None:
    monkeypatch.setattr(sys, "prefix", prefix)
    assert hardware.Install.current().kind == kind


INSTALLS = [
    (hardware.Install("pipx", "/home/u/.local/share/pipx/venvs/assistant/bin/python"), "CUDA",
     'CMAKE_ARGS="-DGGML_CUDA=on" pipx runpip assistant install --force-reinstall --no-deps --no-cache-dir '
     "llama-cpp-python==0.3.36"),
    (hardware.Install("uv", "/home/u/.local/share/uv/tools/assistant/bin/python"), "Vulkan",
     'CMAKE_ARGS="-DGGML_VULKAN=on" uv pip install --python /home/u/.local/share/uv/tools/assistant/bin/python '
     "--reinstall-package llama-cpp-python --no-deps --no-cache llama-cpp-python==0.3.36"),
    (hardware.Install("venv", "/srv/app/.venv/bin/python"), "Metal",
     'CMAKE_ARGS="-DGGML_METAL=on" /srv/app/.venv/bin/python -m pip install --force-reinstall --no-deps '
     "--no-cache-dir llama-cpp-python==0.3.36"),
    (hardware.Install("venv", r"C:\Program Files\a\python.exe", windows=True), "CUDA",
     '$env:CMAKE_ARGS="-DGGML_CUDA=on"; "C:\\Program Files\\a\\python.exe" -m pip install --force-reinstall '
     "--no-deps --no-cache-dir llama-cpp-python==0.3.36"),
]


@pytest.mark.parametrize(("install", "build", "command"), INSTALLS, ids=["pipx", "uv", "venv", "windows"])
def test_reinstall_command_for_each_kind_of_install(install: hardware.Install, build: str, command: str) -> None:
    assert hardware.reinstall_command(build, install, "0.3.36") == command


def test_gpu_advice_only_when_a_gpu_is_there_and_the_build_lacks_it() -> None:
    nvidia = [hardware.GPU("nvidia", "RTX 4090", 24 * GiB, 20 * GiB)]
    venv = hardware.Install("venv", "/v/bin/python")
    assert hardware.gpu_advice([], False, venv, "0.3.36") is None
    assert hardware.gpu_advice(nvidia, True, venv, "0.3.36") is None
    advice = hardware.gpu_advice(nvidia, False, venv, "0.3.36")
    assert advice is not None and advice.build == "CUDA" and advice.worth_it
    assert advice.command.startswith('CMAKE_ARGS="-DGGML_CUDA=on" /v/bin/python -m pip install')
    amd = hardware.gpu_advice([hardware.GPU("amd", "Radeon")], False, venv, "0.3.36")
    assert amd is not None and amd.build == "Vulkan"
    intel = hardware.gpu_advice([hardware.GPU("intel", "Iris")], False, venv, "0.3.36")
    assert intel is not None and not intel.worth_it


def test_doctor_prints_the_rebuild_command_when_the_gpu_goes_unused(monkeypatch: pytest.MonkeyPatch) -> None:
    """No GPU here: the seam is what the platform reports (nvidia-smi's answer)."""
    from click.testing import CliRunner

    from app.cli import main

    monkeypatch.setattr(hardware, "detect_gpus", lambda: [hardware.GPU("nvidia", "RTX 4090", 24 * GiB, 20 * GiB)])
    result = CliRunner().invoke(main, ["doctor"])
    assert result.exit_code == 1  # a GPU left unused is a failure worth fixing
    assert "RTX 4090 found, but this llama-cpp-python cannot use it; rebuild it with CUDA" in result.output
    assert 'CMAKE_ARGS="-DGGML_CUDA=on"' in result.output and "--force-reinstall --no-deps" in result.output
    assert "placement        CPU" in result.output


def test_doctor_shows_hardware_and_fit() -> None:
    checks = {(c["section"], c["name"]): c for c in json.loads(run("doctor", "--json").stdout)}
    assert checks[("hardware", "RAM")]["value"].endswith("GiB")
    assert checks[("fit", "KV cache")]["value"] == "90 MiB at n_ctx 4096"
    assert checks[("fit", "placement")]["value"].startswith("CPU: about")
    assert checks[("fit", "n_gpu_layers")]["value"] == "0"
    assert checks[("model", "chosen")]["value"] == "the embedded model"
    lowered = {(c["section"], c["name"]): c for c in json.loads(
        run("doctor", "--json", env={"ASSISTANT_N_CTX": "100000"}).stdout)}
    assert lowered[("fit", "n_ctx")]["value"] == "8192 (asked: 100000)"


# the app ------------------------------------------------------------------------------------------


async def test_swapping_models_in_the_app_unloads_the_old_one(settings, model_path: Path, tmp_path: Path) -> None:
    from app.screens.chat import ChatScreen
    from app.screens.modals import ModelDialog
    from app.tui import AssistantApp
    from engine import Engine
    from tests.conftest import wait_for

    other = tmp_path / "other-model.gguf"
    other.symlink_to(model_path)
    Registry().add(other, name="other", sha256="0" * 64)
    app = AssistantApp(Engine(settings))
    async with app.run_test(size=(120, 40)) as pilot:
        screen = app.screen
        assert isinstance(screen, ChatScreen)
        await wait_for(lambda: screen.status.state == "ready", 120, what="model loaded")
        old = app.engine.router.backends["local"]
        assert isinstance(old, LocalBackend) and old.loaded

        await pilot.press("f9")
        await wait_for(lambda: isinstance(app.screen, ModelDialog), what="model picker")
        dialog = app.screen
        await wait_for(lambda: bool(dialog.query("OptionList")))
        options = dialog.query_one("OptionList")
        names = [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]
        assert names[0].startswith("  other · Q4_1") and names[1].startswith("● SmolLM2-135M-Instruct.Q4_1")
        options.highlighted = 0
        await pilot.press("enter")
        await wait_for(lambda: screen.status.model == "other-model" and screen.status.state == "ready",
                       120, what="the other model loaded")
        new = app.engine.router.backends["local"]
        assert new is not old and new.loaded and new.model_path == other
        assert not old.loaded and old._executor._shutdown  # unloaded, its thread gone

        screen.prompt.load_text("Say hi")
        await pilot.press("enter")
        await wait_for(lambda: screen.status.state == "ready" and screen.status.tokens_per_s is not None,
                       120, what="an answer")
        rows = await app.engine.history.messages(screen.conversation_id)
        assert rows[-1]["role"] == "assistant"
        response = await app.engine.history.response(rows[-1]["response_id"])
        assert response["model"] == "other-model"


async def test_a_bad_pick_keeps_the_current_model(engine, tmp_path: Path, bad_model: Path) -> None:
    await engine.load_model()
    old = engine.router.backends["local"]
    with pytest.raises(InvalidModelError):
        await engine.switch_model(str(bad_model))
    assert engine.router.backends["local"] is old and old.loaded


def test_fit_dataclass_placement_text() -> None:
    assert Fit(-1, 4096, GiB, 0, True, "").placement == "GPU (all layers)"
    assert Fit(12, 4096, GiB, GiB, True, "").placement == "GPU (12 layers) + CPU"
    assert Fit(0, 4096, 0, GiB, True, "").memory_text == "about 1.0 GiB in RAM"

