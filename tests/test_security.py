"""Security: private files, API keys that never leak, citations that stay inside indexed folders,
and proof that a local-only setup opens no network connection."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from engine.knowledge import Knowledge
from memory.store import Store
from tests.faults import ROOT, env_for
from tests.openai_server import FakeOpenAI
from tests.test_remote import configure, provider

KEY = "sk-test-LEAKCANARY-9d8c7b6a5f4e3d2c1b0a"


def assistant(home: Path, *args: str, check: bool = True, **extra: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "app", *args], cwd=ROOT, capture_output=True, text=True,
                          env=env_for(home, ASSISTANT_MAX_TOKENS="8", **extra), timeout=300)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_data_folder_and_its_files_are_private(home: Path, tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "plan.md").write_text("# Plan\n\nThe garden budget is 400 euros.\n")
    assistant(home, "index", str(notes))
    assistant(home, "ask", "What is the garden budget?")
    assistant(home, "backup")
    assert mode(home) == 0o700
    for folder in ("backups", "logs", "chroma"):
        assert mode(home / folder) == 0o700, folder
    private = [home / "assistant.db", *(home / "backups").iterdir(), *(home / "logs").iterdir()]
    assert len(private) >= 3
    for path in private:
        assert mode(path) == 0o600, f"{path} is {oct(mode(path))}"
    for sidecar in home.glob("assistant.db-*"):  # WAL and shared memory follow the database
        assert mode(sidecar) & 0o077 == 0, sidecar


def test_api_keys_never_reach_the_database_logs_traces_exports_or_errors(home: Path, tmp_path: Path) -> None:
    with FakeOpenAI() as server:
        configure(home, provider(server.url, api_key_env="FAKE_KEY", max_retries=0),
                  backends=["fake"], allow_cloud=True, log_content=True)
        server.then("ok", "500", "401", "garbage", "drop")
        outputs = [assistant(home, "ask", "--stats", "Say hello.", FAKE_KEY=KEY)]
        for _ in range(4):  # a 500 echoing the Authorization header, a 401, a broken stream, a drop
            failed = assistant(home, "ask", "--stats", "Say hello again.", check=False, FAKE_KEY=KEY)
            assert failed.returncode == 1
            outputs.append(failed)
        assert any(KEY in json.dumps(r["headers"]) for r in server.requests)  # the key was really used
        exports = tmp_path / "exports"
        exports.mkdir()
        for args in (["backends", "--check"], ["stats", "--json"], ["stats", "--no-plots"], ["history", "-c", "1"],
                     ["trace", "1"], ["trace", "2"], ["review"], ["doctor"], ["backup"],
                     ["export", "responses", str(exports / "responses.jsonl")],
                     ["export", "responses", str(exports / "responses.csv"), "--format", "csv"],
                     ["export", "conversations", str(exports / "conversations.jsonl")],
                     ["export", "conversations", str(exports / "conversations.md"), "--format", "markdown"],
                     ["export", "sft", str(exports / "sft.jsonl")]):
            outputs.append(assistant(home, *args, check=args[0] != "doctor", FAKE_KEY=KEY))
    said = "".join(o.stdout + o.stderr for o in outputs)
    assert "HTTP 500" in said and "HTTP 401" in said  # the errors were shown...
    assert KEY not in said and KEY[:16] not in said  # ...without the key
    files = [p for p in [*home.rglob("*"), *exports.iterdir()] if p.is_file()]
    assert any(p.name == "assistant.db" for p in files) and any(p.suffix == ".log" for p in files)
    for path in files:
        assert KEY.encode() not in path.read_bytes(), f"the API key is in {path}"


def test_citations_cannot_escape_the_indexed_folder(settings, home: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.md").write_text("# Secret\n\nThe launch code is 7741-SECRET.\n")
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "plan.md").write_text("# Plan\n\nThe garden budget is 400 euros.\n")
    (notes / "secret.md").symlink_to(outside / "secret.md")
    (notes / "elsewhere").symlink_to(outside)
    (notes / "sub").mkdir()
    (notes / "sub" / "up.md").symlink_to("../../outside/secret.md")
    store = Store(home / "assistant.db")
    knowledge = Knowledge(settings, store, home)
    summary = knowledge.index(notes)
    skips = dict(summary.skips)
    for link in ("secret.md", "elsewhere", "sub/up.md"):
        assert skips[link].startswith("links outside the folder"), skips
    assert summary.indexed == 1
    assert not store.conn.execute("SELECT 1 FROM chunks WHERE text LIKE '%SECRET%'").fetchall()
    assert all("SECRET" not in p.text for p in knowledge.search("What is the launch code?", None))
    # A file swapped for a link after indexing: its citation is not opened.
    passage = knowledge.search("garden budget", None)[0]
    assert passage.real_path_inside()
    (notes / "plan.md").unlink()
    (notes / "plan.md").symlink_to(outside / "secret.md")
    assert not passage.real_path_inside()
    store.close()


def audited(home: Path, log: Path, *args: str, **extra: str) -> subprocess.CompletedProcess:
    """`assistant ARGS` with every socket call recorded, and without the variables the tests set to
    keep libraries offline (a user has none of them: the app must keep itself offline)."""
    env = env_for(home, ASSISTANT_MAX_TOKENS="8", **extra)
    for name in ("HF_HUB_OFFLINE", "ANONYMIZED_TELEMETRY", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        env.pop(name, None)
    return subprocess.run([sys.executable, "-m", "tests.netaudit", str(log), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def network_calls(log: Path) -> list[dict]:
    if not log.exists():
        return []
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    return [c for c in calls if c["family"] != "AF_UNIX"]


def test_local_only_opens_no_network_connection(home: Path, tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "plan.md").write_text("# Plan\n\nThe garden budget is 400 euros.\n")
    log = tmp_path / "calls.jsonl"
    for args in (["index", str(notes)], ["ask", "What is the garden budget?"]):
        done = audited(home, log, *args)
        assert done.returncode == 0, done.stderr
    assert network_calls(log) == []
    assert "plan.md" in done.stdout  # answered from the indexed folder
    # The hook does see network calls: a configured remote backend's are recorded.
    with FakeOpenAI() as server:
        configure(home, provider(server.url), backends=["fake"], allow_cloud=True)
        assert audited(home, log, "backends", "--check").returncode == 0
    assert any(c["event"] == "socket.connect" and "127.0.0.1" in c["args"][0] for c in network_calls(log))


@pytest.mark.soak  # the audit-hook test above proves the same in `make test`
def test_local_only_works_in_a_network_namespace_without_interfaces(home: Path, tmp_path: Path) -> None:
    if not shutil.which("unshare"):
        pytest.skip("unshare (util-linux) is not installed")
    flags = ["-n"] if os.geteuid() == 0 else ["-r", "-n"]
    if subprocess.run(["unshare", *flags, "true"], capture_output=True).returncode != 0:
        pytest.skip("network namespaces are not permitted here")
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "plan.md").write_text("# Plan\n\nThe garden budget is 400 euros.\n")
    env = env_for(home, ASSISTANT_MAX_TOKENS="8")
    env.pop("HF_HUB_OFFLINE")
    for args in (["index", str(notes)], ["ask", "What is the garden budget?"]):
        done = subprocess.run(["unshare", *flags, sys.executable, "-m", "app", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert "plan.md" in done.stdout  # answered from the indexed folder, with no network at all


# terminal escape sequences from outside (issue 18) ---------------------------------------------------

CLIPBOARD = "\x1b]52;c;Y3VybCBldmlsLmV4YW1wbGUgfCBzaA==\x07"  # OSC 52: write the clipboard
TITLE = "\x1b]0;pwned\x07"  # OSC 0: set the window title
HIDDEN = "\x1b[8m"  # what follows is invisible
ATTACKS = (CLIPBOARD, TITLE, HIDDEN, "\x9b8m", "\x1b]0;", "\x1b[8m", "\u202e")


def acting(text: str) -> list[str]:
    """The sequences in `text` a terminal would act on."""
    return [a for a in ATTACKS if a in text] + (["ESC"] if "\x1b" in text else [])


def test_text_from_outside_cannot_drive_the_terminal() -> None:
    from engine.terminal_text import terminal_line, terminal_text

    answer = f"Hello{CLIPBOARD} wor{HIDDEN}ld{TITLE}!\r\nline two\tok \u202eevil\x9b8m\x00."
    assert terminal_text(answer) == "Hello world!\nline two\tok evil8m."
    assert terminal_text("Ünïcode, emoji 🔧, RTL עברית\u200f, lines\nstay") == \
        "Ünïcode, emoji 🔧, RTL עברית\u200f, lines\nstay"
    # A sequence split across two streamed pieces: ESC never survives, so neither half acts.
    assert not acting(terminal_text("Hi \x1b") + terminal_text("]52;c;ZXZpbA==\x07 there"))
    name = "report\n[1] fake.md\u202etxt.exe\x1b]0;t\x07"
    assert terminal_line(name) == "report\\n[1] fake.md\\u202etxt.exe\\x1b]0;t\\x07"  # shown, not acted on


def test_escape_sequences_reach_the_terminal_from_no_answer_tool_line_or_file_name(home: Path,
                                                                                   tmp_path: Path) -> None:
    """A remote answer, a file's text in the 🔧 tool line, and a file name in Sources."""
    notes = tmp_path / "notes"
    notes.mkdir()
    evil_name = f"budget{TITLE}\u202etxt.md"
    (notes / evil_name).write_text(f"# Garden\n\nThe garden budget is 400 euros.{CLIPBOARD}{HIDDEN} secret\n")
    assistant(home, "index", str(notes))
    with FakeOpenAI(words=["The garden", CLIPBOARD, " budget is", HIDDEN, " 400 euros", TITLE, " [1]."]) as server:
        configure(home, provider(server.url), backends=["fake"], allow_cloud=True, tool_calling="always",
                  tools=["read_file"])
        server.then({"tool": "read_file", "arguments": json.dumps({"path": evil_name})}, "ok")
        done = assistant(home, "ask", "--max-tokens", "64", "What is the garden budget?")
    assert len(server.requests) >= 2  # tool decisions, then the answer
    assert "The garden budget is 400 euros [1]." in done.stdout
    assert "🔧 read_file" in done.stderr and "\\x1b]52;c;" in done.stderr  # the file's text, shown escaped
    assert "\\u202etxt.md" in done.stdout  # the name in Sources, as it really is
    assert acting(done.stdout) == [] and acting(done.stderr) == []
    # The answer is stored as it came: a record, printed only through the same filter.
    history = assistant(home, "history", "-c", "1")
    assert "400 euros" in history.stdout and acting(history.stdout) == []


async def test_the_chat_app_cleans_answers_sources_and_tool_lines() -> None:
    """Textual hands escape characters in a widget's text to the terminal as they are."""
    import io
    import types

    from rich.console import Console
    from textual.app import App
    from textual.widgets import Markdown

    from app.widgets.answer import AnswerMessage, SourceLine

    evil = f"Answer {CLIPBOARD} with {HIDDEN}hidden{TITLE} text \u202eok"
    passage = types.SimpleNamespace(location=f"notes/a{TITLE}\u202e.md:1-2")
    step = types.SimpleNamespace(call=types.SimpleNamespace(name="read_file"), status="ok", result=evil)

    class Chat(App):
        def compose(self):
            yield AnswerMessage(evil, id="reopened")  # a stored answer, shown again
            yield AnswerMessage("", id="streamed")
            yield SourceLine(types.SimpleNamespace(passage=passage, number=1, cited=True))

    app = Chat()
    async with app.run_test(size=(160, 40)) as pilot:
        streamed = app.query_one("#streamed", AnswerMessage)
        stream = Markdown.get_stream(streamed.markdown)  # as the chat screen streams an answer
        for piece in ("Streamed ", CLIPBOARD, "answer", HIDDEN, TITLE):
            await stream.write(piece)
        await stream.stop()
        streamed.tool_steps = (step,)
        streamed.refresh_footer()
        await pilot.pause()
        # What the app writes to the terminal: the whole screen, rendered as its driver does.
        out = io.StringIO()
        Console(file=out, force_terminal=True, color_system="truecolor", width=160).print(
            app.screen._compositor.render_update(full=True), end="")
        screen = out.getvalue()
    assert "Answer" in screen and "Streamed" in screen and "notes/a" in screen
    assert [a for a in ATTACKS if a in screen] == []


def test_only_the_router_sends_requests_to_a_backend() -> None:
    """Issue 18, item 1: tool decisions called `backend.stream` themselves and skipped the router's
    gates (cloud allowed, privacy, budget, breaker, redaction). Every other module is handed the
    router's gate instead; this keeps it so: no `.stream(` / `.complete(` call outside the router
    and the backends themselves (an HTTP client's own `client.stream` aside)."""
    import ast

    found = []
    for package in ("app", "engine", "memory", "plugins"):
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if relative == "engine/router.py" or relative.startswith("engine/backends/"):
                continue
            for node in ast.walk(ast.parse(path.read_text("utf-8"))):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                    continue
                if node.func.attr not in ("stream", "complete"):
                    continue
                receiver = ast.unparse(node.func.value)
                if receiver.endswith("client") or receiver.endswith("_gate") or receiver.endswith("router"):
                    continue  # httpx's client, or the router's gate itself
                if relative == "app/serve/http.py" and receiver == "request":
                    continue  # Starlette's request body, read in pieces
                found.append(f"{relative}:{node.lineno}: {ast.unparse(node.func)}")
    assert found == [], "requests that skip the router's gates:\n" + "\n".join(found)


HEADER_KEY = "hdr-LEAKCANARY-x1y2z3w4v5u6"  # sent as `headers = {"x-api-key" = ...}`


def test_a_key_an_answer_or_error_echoes_reaches_no_table_backup_or_export(home: Path, tmp_path: Path) -> None:
    """Issue 18, item 7: an answer echoing the Authorization header was stored with the key in
    `messages` and their full-text index, so in backups and exports; a key in `headers` (x-api-key)
    was never redacted (error note, responses.route, CSV export). A real server on 127.0.0.1 echoes
    both, in an answer streamed slowly enough to be saved as drafts mid-key, and in a 500."""
    from tests.faults import rows

    echo = ["Your request had ", "Authorization: Bearer ", KEY[:14], KEY[14:], " and x-api-key: ",
            HEADER_KEY[:9], HEADER_KEY[9:], " in it."]
    with FakeOpenAI(words=echo) as server:
        server.chunk_delay_s = 0.3  # drafts are saved every 0.25 s: some end inside a key
        configure(home, provider(server.url, api_key_env="FAKE_KEY", max_retries=0,
                                 headers={"x-api-key": HEADER_KEY}),
                  backends=["fake", "local"], allow_cloud=True, log_content=True)
        server.then("ok", "500")
        echoed = assistant(home, "ask", "--max-tokens", "32", "Which headers did I send?", FAKE_KEY=KEY)
        fell_back = assistant(home, "ask", "-c", "1", "And now?", FAKE_KEY=KEY)  # the 500 echoes both
        assert all(KEY in r["headers"]["Authorization"] and r["headers"]["x-api-key"] == HEADER_KEY
                   for r in server.requests)  # both were really sent
    assert "Bearer sk-test" in echoed.stdout  # shown to its owner as it came, kept masked
    assert "HTTP 500" in fell_back.stdout + fell_back.stderr and HEADER_KEY not in fell_back.stderr  # the note
    answer = rows(home / "assistant.db", "SELECT content FROM messages WHERE role = 'assistant' ORDER BY id")[0][0]
    assert answer == "Your request had Authorization: Bearer [redacted] and x-api-key: [redacted] in it."
    route = rows(home / "assistant.db", "SELECT route FROM responses ORDER BY id DESC LIMIT 1")[0][0]
    assert "HTTP 500" in route and "[redacted]" in route
    exports = tmp_path / "exports"
    exports.mkdir()
    for args in (["backup"], ["export", "conversations", str(exports / "conversations.jsonl")],
                 ["export", "conversations", str(exports / "conversations.md"), "--format", "markdown"],
                 ["export", "responses", str(exports / "responses.csv"), "--format", "csv"],
                 ["export", "responses", str(exports / "responses.jsonl")]):
        assistant(home, *args)
    found = assistant(home, "history", "-s", "LEAKCANARY")  # the full-text index never saw it
    assert found.stdout.startswith("No conversation mentions")
    # Everything but the config file, where the user put the header (the data folder holds it here).
    files = [p for p in [*home.rglob("*"), *exports.iterdir()] if p.is_file() and p.name != "config.toml"]
    assert any(p.parent.name == "backups" for p in files) and len(list(exports.iterdir())) == 4
    for path in files:
        data = path.read_bytes()
        for secret in (KEY, HEADER_KEY):
            assert secret[:14].encode() not in data, f"{secret[:14]}… is in {path}"


def test_a_text_cut_inside_a_key_keeps_none_of_it() -> None:
    """Error bodies are read up to a limit, then redacted: the cut left "Bearer sk-..." whole."""
    from engine.secrets import MASK, Secret, redact, remember_headers

    Secret(KEY)
    remember_headers({"x-api-key": HEADER_KEY, "User-Agent": "assistant-test/1.0"})
    for cut in (4, 10, len(KEY) - 1):
        assert redact(f"auth: Bearer {KEY[:cut]}") == f"auth: Bearer {MASK}"
    assert redact(f"{HEADER_KEY} {KEY}, not assistant-test/1.0") == f"{MASK} {MASK}, not assistant-test/1.0"
    assert redact("it costs two marks") == "it costs two marks"  # words are not keys
