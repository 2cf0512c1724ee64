"""Concurrency soak: the TUI, `assistant ask` and `assistant index` (and feedback, backup) at once on
one data folder, for a bounded time; then nothing lost, nothing locked, SQLite and Chroma agree.

Each client runs in its own process, as in separate terminals:

    tui       the chat app headless (tests/tui_driver.py), asking one question after another
    ask       `assistant ask --stats` in a loop, each answer's response id read from its stderr
    index     a file changed, one added, one removed, then `assistant index FOLDER`, in a loop
    others    `assistant feedback` on answers seen so far, `assistant backup`, `assistant history`

Checked at the end: every command exited 0 and no output or TUI notification says "locked"; each
question a client saw answered is in the database with its answer (no lost write); each feedback
is there; a last `assistant index` finds nothing left to do and SQLite's chunk ids are exactly
Chroma's; `PRAGMA integrity_check` passes on both databases.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.faults import ROOT, chroma_ids, env_for, integrity, rows, run

RESPONSE = re.compile(r"\[response (\d+) · conversation (\d+)")


@dataclass
class SoakResult:
    seconds: float
    commands: dict[str, int] = field(default_factory=dict)  # client -> commands run
    answers: int = 0  # answers checked in the database
    problems: list[str] = field(default_factory=list)


class _Clients:
    def __init__(self, home: Path, folder: Path, deadline: float, seed: int) -> None:
        self.home, self.folder, self.deadline = home, folder, deadline
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.answered: list[tuple[str, int, int]] = []  # (question, response id, conversation id)
        self.rated: list[int] = []
        self.counts: dict[str, int] = {}
        self.problems: list[str] = []

    def command(self, client: str, *args: str, **extra: str) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, "-m", "app", *args], cwd=ROOT, env=env_for(self.home, **extra),
                              capture_output=True, text=True, timeout=600)
        with self.lock:
            self.counts[client] = self.counts.get(client, 0) + 1
            output = done.stdout + done.stderr
            if done.returncode != 0:
                self.problems.append(f"{client}: `assistant {' '.join(args)[:60]}` exited {done.returncode}: "
                                     f"{done.stderr.strip()[-300:]}")
            elif "locked" in output.lower():
                self.problems.append(f"{client}: 'locked' reached the user: {output.strip()[-300:]}")
        return done

    def ask(self) -> None:
        number = 0
        while time.monotonic() < self.deadline:
            number += 1
            question = f"CLI question {number}: what is {number} plus one?"
            done = self.command("ask", "ask", "--stats", "--no-cache", question, ASSISTANT_MAX_TOKENS="16")
            if (found := RESPONSE.search(done.stderr)) and done.returncode == 0:
                with self.lock:
                    self.answered.append((question, int(found[1]), int(found[2])))

    def index(self) -> None:
        number = 0
        while time.monotonic() < self.deadline:
            number += 1
            files = sorted(self.folder.glob("*.md"))
            changed = self.rng.choice(files)
            with changed.open("a") as fh:
                fh.write(f"\nEdit {number}: the {self.rng.choice(['red', 'green', 'blue'])} lantern moved.\n")
            (self.folder / f"added-{number}.md").write_text(f"# Added {number}\n\nNote {number} on harbours.\n")
            if number > 2:
                (self.folder / f"added-{number - 2}.md").unlink(missing_ok=True)
            self.command("index", "index", str(self.folder), "--json")

    def others(self) -> None:
        number = 0
        while time.monotonic() < self.deadline:
            number += 1
            with self.lock:
                target = self.answered[-1][1] if self.answered else None
            if target is not None and target not in self.rated:
                if self.command("others", "feedback", str(target), "up").returncode == 0:
                    with self.lock:
                        self.rated.append(target)
            if number % 3 == 0:
                self.command("others", "backup", str(self.home.parent / f"soak-backup-{number}.db"))
            else:
                self.command("others", "history", "-n", "5")
            time.sleep(0.5)


def soak(home: Path, minutes: float, seed: int = 11, files: int = 30) -> SoakResult:
    """Run the clients on `home` for `minutes`, then check; `home` must not exist yet."""
    from tests.rag_corpus import write_many_files

    folder = write_many_files(home.parent / "soak-folder", files)
    run(home, "index", str(folder), "--json")  # the TUI and asks search it from the start
    began = time.monotonic()
    clients = _Clients(home, folder, began + minutes * 60, seed)
    tui_out = home.parent / "soak-tui.json"
    tui = subprocess.Popen([sys.executable, "-m", "tests.tui_driver", str(minutes * 60), str(tui_out)], cwd=ROOT,
                           env=env_for(home), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    threads = [threading.Thread(target=fn) for fn in (clients.ask, clients.index, clients.others)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    _, tui_err = tui.communicate(timeout=600)
    result = SoakResult(time.monotonic() - began, dict(clients.counts), problems=list(clients.problems))
    if tui.returncode != 0:
        result.problems.append(f"tui: exited {tui.returncode}: {tui_err[-500:]}")
    else:
        report = json.loads(tui_out.read_text())
        result.commands["tui"] = len(report["asked"])
        result.problems += [f"tui showed: {m}" for m in report["shown"]]
        for item in report["asked"]:
            if item["response_id"] is None or item["state"]:
                result.problems.append(f"tui: {item['question']!r} not answered ({item['state']})")
            else:
                clients.answered.append((item["question"], item["response_id"], item["conversation_id"]))
    _check(home, folder, clients, result)
    return result


def _check(home: Path, folder: Path, clients: _Clients, result: SoakResult) -> None:
    db = home / "assistant.db"
    for question, response_id, conversation_id in clients.answered:
        found = rows(db, """SELECT r.conversation_id, r.status, q.content, a.content FROM responses r
                            JOIN messages q ON q.id = r.prompt_message_id
                            LEFT JOIN messages a ON a.id = r.message_id WHERE r.id = ?""", (response_id,))
        if not found or found[0][0] != conversation_id or found[0][2] != question or not found[0][3]:
            result.problems.append(f"lost write: response {response_id} for {question!r}: {found}")
        result.answers += 1
    for response_id in clients.rated:
        if not rows(db, "SELECT 1 FROM feedback WHERE response_id = ?", (response_id,)):
            result.problems.append(f"lost write: the thumbs up on response {response_id}")
    last = json.loads(run(home, "index", str(folder), "--json").stdout)
    if last["indexed"] or last["resumed_chunks"] or last["removed"]:
        result.problems.append(f"the last index run still had work: {last}")
    ids = {r[0] for r in rows(db, "SELECT id FROM chunks")}
    vectors = chroma_ids(home)
    if ids != vectors:
        result.problems.append(f"SQLite and Chroma disagree: {len(ids - vectors)} chunks without a vector, "
                               f"{len(vectors - ids)} vectors without a chunk")
    expected = len(list(folder.glob("*.md")))
    if (indexed := rows(db, "SELECT COUNT(*) FROM files WHERE state = 'indexed'")[0][0]) != expected:
        result.problems.append(f"{indexed} files indexed, {expected} in the folder")
    for path in (db, home / "chroma" / "chroma.sqlite3"):
        if (check := integrity(path)) != "ok":
            result.problems.append(f"integrity_check of {path.name}: {check}")
