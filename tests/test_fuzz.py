"""Fuzzing with hypothesis: the loaders, the chunker, the GGUF validator, the SSE parser of the
remote backend, the config loader and the slash-command parser. Whatever the input, each either
works or raises an error of our own tree (AssistantError and its subclasses), within a deadline:
anything else is a bug.

The example counts here are for `make test`; `make soak` runs this file again with
FUZZ_EXAMPLES=2000 (and tests/gguf_fuzz.py, which loads mutated models into llama.cpp itself, in
a subprocess that a crash of the C library cannot take down).
"""

from __future__ import annotations

import asyncio
import json
import os
import string
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from engine.backends.base import SamplingParams, StreamResult
from engine.backends.openai_compat import OpenAICompatibleBackend
from engine.config import FIELDS, PROVIDER_FIELDS, Provider, load_settings
from engine.errors import AssistantError, ConfigError, InvalidModelError
from engine.gguf import GGUFInfo, _parse, _Reader, read_gguf
from engine.models import default_model_path
from memory.chunker import chunk_lines, estimate_tokens
from memory.documents import Line, LoaderError
from plugins.loaders import load_docx, load_html, load_pdf, load_text

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=EXAMPLES, deadline=5000, derandomize=os.environ.get("FUZZ_SEED") is None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])

# -- loaders --------------------------------------------------------------------------------------

SAMPLES: dict[str, bytes] = {}


def sample(kind: str) -> bytes:
    """A small valid file of each binary kind, to mutate."""
    if kind not in SAMPLES:
        import tempfile

        from tests.rag_corpus import write_pdf
        from tests.test_loaders import make_docx

        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / f"sample.{kind}"
            if kind == "pdf":
                write_pdf(path, ["First page of the report.", "Second page: revenue grew."])
            else:
                make_docx(path)
            SAMPLES[kind] = path.read_bytes()
    return SAMPLES[kind]


def mutated(data: bytes) -> st.SearchStrategy[bytes]:
    """`data` with a few bytes changed, or cut short, or with bytes inserted."""
    patches = st.lists(st.tuples(st.integers(0, len(data) - 1), st.integers(0, 255)), max_size=12)

    def apply(args: tuple[list[tuple[int, int]], int | None, bytes]) -> bytes:
        changes, cut, inserted = args
        out = bytearray(data)
        for offset, value in changes:
            out[offset] = value
        if inserted:
            out[len(out) // 2: len(out) // 2] = inserted
        return bytes(out[:cut] if cut is not None else out)

    return st.tuples(patches, st.none() | st.integers(0, len(data)), st.binary(max_size=64)).map(apply)


def loads_or_refuses(loader, path: Path) -> list[Line]:  # noqa: ANN001 - a Loader
    try:
        lines = loader(path)
    except LoaderError as exc:
        assert exc.message and "\n" not in exc.message  # a short reason, shown as the file's skip
        return []
    assert all(isinstance(line, Line) and isinstance(line.text, str) and line.line >= 1 for line in lines)
    return lines


@FUZZ
@given(data=st.binary(max_size=4096) | st.text(max_size=2000).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_text_and_html_loaders_take_any_bytes(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "file"
    path.write_bytes(data)
    loads_or_refuses(load_text, path)
    loads_or_refuses(load_html, path)


HTML_PARTS = st.sampled_from(["<p>", "</p>", "<div hidden>", "</div>", "<script>", "</script>", "<pre>",
                              "</pre>", "<!--", "-->", "<![CDATA[", "]]>", "<style>", "<table><tr><td>",
                              "&amp;", "&#0;", "&#xD800;", "<meta charset='utf-16'>", "<", ">", "\x00",
                              "<span style='display:none'>", "text ", "\n"])


@FUZZ
@given(parts=st.lists(HTML_PARTS | st.text(max_size=20), max_size=60))
def test_html_loader_takes_any_markup(tmp_path: Path, parts: list[str]) -> None:
    path = tmp_path / "page.html"
    path.write_text("".join(parts), encoding="utf-8", errors="surrogatepass")
    loads_or_refuses(load_html, path)


@FUZZ
@given(data=st.one_of(st.binary(max_size=2048), st.deferred(lambda: mutated(sample("pdf")))))
def test_pdf_loader_takes_damaged_files(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "report.pdf"
    path.write_bytes(data)
    loads_or_refuses(load_pdf, path)


@FUZZ
@given(data=st.one_of(st.binary(max_size=2048), st.deferred(lambda: mutated(sample("docx")))))
def test_docx_loader_takes_damaged_files(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "report.docx"
    path.write_bytes(data)
    loads_or_refuses(load_docx, path)


# -- chunker --------------------------------------------------------------------------------------

LINE_TEXT = st.one_of(
    st.text(max_size=120),
    st.sampled_from(["# Title", "## Sub", "===", "---", "```", "```python", "def f():", "class A:", "",
                     "    return 1", "@decorator", "Title", "*****", "  ", "\t", "x" * 3000]),
)


@st.composite
def documents(draw: st.DrawFn) -> list[Line]:
    texts = draw(st.lists(LINE_TEXT, max_size=80))
    paged = draw(st.booleans())
    lines, page, number = [], 1, 0
    for text in texts:
        if paged and draw(st.integers(0, 9)) == 0:
            page, number = page + 1, 0
        number += 1
        lines.append(Line(text, number, page if paged else None))
    return lines


@FUZZ
@given(lines=documents(), kind=st.sampled_from(["text", "markdown", "rst", "code", "html", "pdf", "docx", "?"]),
       budget=st.integers(1, 300), overlap=st.integers(0, 300))
def test_chunker_takes_any_document(lines: list[Line], kind: str, budget: int, overlap: int) -> None:
    chunks = chunk_lines(lines, kind, budget, overlap)
    for chunk in chunks:
        assert chunk.text.strip()
        assert 1 <= chunk.start_line <= chunk.end_line
        assert estimate_tokens(chunk.text) <= budget + min(overlap, budget // 2) + budget  # bounded
    kept = set("".join(c.text for c in chunks))
    assert {ch for line in lines for ch in line.text if not ch.isspace()} <= kept  # no text dropped


# -- GGUF validator ---------------------------------------------------------------------------------


def _header() -> tuple[bytes, int]:
    """The real model's header (metadata and tensor infos), and the whole file's size."""
    path = default_model_path()
    import mmap

    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        reader = _Reader(buf, path)
        _parse(reader)
        return bytes(buf[: reader.pos]), len(buf)


HEADER: tuple[bytes, int] | None = None


def header() -> tuple[bytes, int]:
    global HEADER
    if HEADER is None:
        HEADER = _header()
    return HEADER


def validates_or_refuses(path: Path) -> GGUFInfo | None:
    try:
        return read_gguf(path)
    except AssistantError as exc:
        assert str(path) in str(exc)  # the message names the file
        return None


@FUZZ
@given(data=st.binary(max_size=512), version=st.sampled_from([2, 3, 4, 0xFFFFFFFF]))
def test_gguf_validator_takes_any_bytes_after_the_magic(tmp_path: Path, data: bytes, version: int) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF" + version.to_bytes(4, "little") + data)
    validates_or_refuses(path)


@FUZZ
@given(patches=st.lists(st.tuples(st.integers(0, 4096), st.integers(0, 255)), min_size=1, max_size=8),
       tail=st.booleans(), cut=st.none() | st.integers(0, 1 << 20))
def test_gguf_validator_takes_a_damaged_real_header(tmp_path: Path, patches: list[tuple[int, int]], tail: bool,
                                                   cut: int | None) -> None:
    raw, size = header()
    data = bytearray(raw)
    for offset, value in patches:  # early bytes hold the counts, types and lengths that matter most
        position = (len(data) - 1 - offset) if tail else offset
        data[position % len(data)] = value
    path = tmp_path / "model.gguf"
    with path.open("wb") as fh:
        fh.write(data[:cut] if cut is not None else data)
        if cut is None:
            fh.truncate(size)  # sparse: the tensors' bytes, as zeros, without writing 100 MB
    validates_or_refuses(path)


# -- SSE parser of the remote backend ---------------------------------------------------------------

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                                 max_size=4), max_leaves=12)
CHUNK = st.fixed_dictionaries({}, optional={
    "choices": st.lists(st.fixed_dictionaries({}, optional={
        "delta": st.fixed_dictionaries({}, optional={"content": JSON, "role": JSON, "tool_calls": st.lists(
            st.fixed_dictionaries({}, optional={"index": st.integers(-2, 10**9) | JSON, "id": JSON,
                                                "function": st.fixed_dictionaries({}, optional={
                                                    "name": JSON, "arguments": JSON}) | JSON}) | JSON,
            max_size=3) | JSON}) | JSON,
        "finish_reason": JSON, "index": JSON}) | JSON, max_size=2) | JSON,
    "usage": st.fixed_dictionaries({}, optional={"prompt_tokens": JSON, "completion_tokens": JSON}) | JSON,
    "id": JSON,
}) | JSON


def sse_body() -> st.SearchStrategy[bytes]:
    event = st.one_of(
        CHUNK.map(lambda c: f"data: {json.dumps(c)}\n\n"),
        st.sampled_from(["data: [DONE]\n\n", ": comment\n", "event: ping\n\n", "retry: 10\n", "\n", "data:\n\n",
                         "data: {\n", "id: 1\n", "data: \r\n\r\n"]),
        st.text(max_size=40),
    )
    return st.lists(event, max_size=12).map(lambda parts: "".join(parts).encode("utf-8", "surrogatepass")) | \
        st.binary(max_size=256)


async def stream_from(body: bytes, status: int, content_type: str) -> tuple[str, StreamResult]:
    transport = httpx.MockTransport(lambda request: httpx.Response(
        status, content=body, headers={"content-type": content_type}))
    backend = OpenAICompatibleBackend(Provider(name="fuzz", base_url="http://fuzz.invalid/v1", model="m",
                                               max_retries=0, total_timeout_s=5))
    backend._client = httpx.AsyncClient(transport=transport, base_url="http://fuzz.invalid/v1/")
    result = StreamResult()
    try:
        text = "".join([p async for p in backend.stream([{"role": "user", "content": "hi"}],
                                                        SamplingParams(16, 0.0, 1.0, 1), result)])
    finally:
        await backend.aclose()
    return text, result


@FUZZ
@example(body=b'data: {"choices": {"": null}}\n\n', status=200, content_type="text/event-stream")  # was a KeyError
@example(body=b'data: {"usage": {"prompt_tokens": "7"}, "choices": []}\n\n', status=200,
         content_type="text/event-stream")  # a count that is not a number was kept as text
@given(body=sse_body(), status=st.sampled_from([200, 200, 200, 400, 500, 302]),
       content_type=st.sampled_from(["text/event-stream", "application/json", "text/html"]))
def test_sse_parser_takes_any_stream(body: bytes, status: int, content_type: str) -> None:
    try:
        text, result = asyncio.run(stream_from(body, status, content_type))
    except AssistantError:
        return
    assert isinstance(text, str)
    assert isinstance(result.completion_tokens, int) and isinstance(result.prompt_tokens, (int, type(None)))


# -- config loader ----------------------------------------------------------------------------------


def toml_scalar(value: object) -> str:
    return json.dumps(value) if not isinstance(value, bool) else str(value).lower()


SCALAR = st.booleans() | st.integers(-10**6, 10**20) | st.floats(allow_nan=False, allow_infinity=False) | \
    st.text(string.printable, max_size=12)
VALUE = SCALAR | st.lists(st.text(string.ascii_letters, max_size=8), max_size=3)


@st.composite
def config_files(draw: st.DrawFn) -> str:
    keys = draw(st.lists(st.sampled_from([*FIELDS, "unknown_thing"]), max_size=6, unique=True))
    lines = [f"{k} = {toml_scalar(draw(VALUE))}" for k in keys if k not in ("providers", "prices")]
    for name in draw(st.lists(st.text(string.ascii_lowercase, min_size=1, max_size=6), max_size=2, unique=True)):
        lines.append(f"[providers.{name}]")
        for key in draw(st.lists(st.sampled_from([*PROVIDER_FIELDS, "api_key"]), max_size=5, unique=True)):
            lines.append(f"{key} = {toml_scalar(draw(VALUE))}")
    if draw(st.booleans()):
        lines.append(draw(st.text(max_size=40)))  # and maybe not TOML at all
    return "\n".join(lines) + "\n"


@FUZZ
@given(text=config_files(), env=st.dictionaries(st.sampled_from([f"ASSISTANT_{n.upper()}" for n in FIELDS]),
                                                st.text(string.printable, max_size=10), max_size=3))
def test_config_loader_takes_any_file_and_environment(tmp_path: Path, text: str, env: dict[str, str]) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        loaded = load_settings(path, env)
    except ConfigError as exc:
        assert "api_key = " not in str(exc)  # a key written in the file is never echoed back
        return
    assert loaded.n_ctx >= 256 and 1 <= loaded.max_tokens < loaded.n_ctx


@pytest.mark.parametrize("raw", [b"\xff\xfe\x00", b"a = 1\x00", b"[providers]\nx = 1\n", b"n_ctx = 1e400\n"])
def test_config_loader_known_oddities(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(raw)
    with pytest.raises(ConfigError):
        load_settings(path, {})


def damaged_model(tmp_path: Path, patches: list[tuple[int, int]]) -> Path:
    raw, size = header()
    data = bytearray(raw)
    for offset, value in patches:
        data[offset] = value
    path = tmp_path / "damaged.gguf"
    with path.open("wb") as fh:
        fh.write(data)
        fh.truncate(size)
    return path


@pytest.mark.parametrize(("patches", "why"), [
    ([(3925, 113)], "lists the token 'qs' twice"),  # a token renamed into another one
    ([(667165, 0)], "twice"),  # a NUL byte: llama.cpp reads "Mont\0rey" as "Mont", a duplicate
    ([(489, 171)], "block_count is 2868903966"),  # more layers than llama.cpp allows
])
def test_damage_that_made_llama_cpp_abort_is_refused_first(tmp_path: Path, patches: list, why: str) -> None:
    """Found by tests/gguf_fuzz.py: each of these passed the validator, then llama.cpp failed a
    GGML_ASSERT and aborted the whole process (the TUI with it)."""
    with pytest.raises(InvalidModelError, match=why):
        read_gguf(damaged_model(tmp_path, patches))


def test_mutated_models_never_abort_llama_cpp() -> None:
    """tests/gguf_fuzz.py in a subprocess: hundreds of damaged models loaded for real."""
    import subprocess
    import sys

    trials = max(EXAMPLES, 100)
    done = subprocess.run([sys.executable, "-m", "tests.gguf_fuzz", str(trials), os.environ.get("FUZZ_SEED", "1")],
                          cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, timeout=900)
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert done.returncode == 0 and last.startswith(f"done {trials}"), f"crashed ({done.returncode}) at {last}"
    assert "loaded" in last and "InvalidModelError" in last  # both kinds of outcome were reached


# -- slash-command parser (app/slash.py) -------------------------------------------------------------


@FUZZ
@given(line=st.text(max_size=60) | st.text(max_size=30).map(lambda t: "/" + t),
       names=st.lists(st.text(string.ascii_lowercase + "-_", min_size=1, max_size=10), max_size=8))
def test_slash_command_parser_takes_any_line(line: str, names: list[str]) -> None:
    from app.slash import complete, matches, parse, unescape

    parsed = parse(line)
    if parsed is not None:
        name, args = parsed
        assert line.strip().startswith("/" + name) or line.strip().lower().startswith("/" + name)
        assert name == name.lower() and " " not in name and args == args.strip()
    assert isinstance(unescape(line), str)
    found = matches(line, names)
    assert all(n.startswith(line[1:].lower()) for n in found)
    completed = complete(line, names)
    assert completed is None or (completed.startswith("/") and any(f"/{n}".startswith(completed.rstrip())
                                                                    for n in found))
