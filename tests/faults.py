"""Crash trials: real `assistant` processes killed with SIGKILL at random moments.

Each scenario prepares a data folder once, then per trial copies it, starts the command, kills
it after a random delay (seeded: `random.Random(seed)`, reported with every trial) drawn over the
whole time a clean run takes, and checks what survived: `PRAGMA integrity_check` on every SQLite
file, nothing written earlier changed, and the next run picks up where the killed one stopped.

    answer     `assistant ask -c 1` mid-conversation: earlier turns intact, the question kept once
               the process got that far, the answer so far kept as a partial message
    index      `assistant index`: a resumed run gives the clean run's files, chunks and vectors,
               and SQLite's chunk ids are exactly Chroma's
    rebuild    `assistant index --rebuild` of 30 files (300 chunks): the next `assistant index`
               leaves a vector for every chunk and no other, and no rebuild marked unfinished
    migration  an old-schema database (schema 7, 60k messages) opened by `assistant history`:
               every message kept, the schema one of the numbered versions, and reopening finishes
    backup     `assistant backup`: the database untouched, and the target either absent or a
               complete, sound, private backup; the next backup to the same name works

tests/test_crash.py runs a few trials of each; `make soak` (tests/soak.py) runs the full count.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LONG_QUESTION = "Write a very long essay about the history of Rome."


@dataclass
class Trial:
    scenario: str
    number: int
    delay_s: float  # when the kill landed, after the process started
    stage: str = ""  # how far the process got before the kill
    problems: list[str] = field(default_factory=list)  # anything lost or broken: empty is a pass

    def line(self) -> str:
        verdict = "ok" if not self.problems else "LOST: " + "; ".join(self.problems)
        return f"{self.scenario} #{self.number}: kill at {self.delay_s:.2f} s ({self.stage}) -> {verdict}"


def env_for(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANT_")}
    # One decoding thread: several processes share the cores here, and llama.cpp's threads spin
    # while they wait for each other, which slowed oversubscribed runs down a hundredfold.
    env.update(ASSISTANT_HOME=str(home), ASSISTANT_TEMPERATURE="0", ASSISTANT_SEED="42", ASSISTANT_N_THREADS="1",
               PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", **extra)
    return env


def start(home: Path, *args: str, stdout: int | object = subprocess.DEVNULL, **extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "app", *args], cwd=ROOT, env=env_for(home, **extra),
                            stdout=stdout, stderr=subprocess.PIPE, text=True)


def run(home: Path, *args: str, timeout: float = 300, **extra: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "app", *args], cwd=ROOT, env=env_for(home, **extra),
                          capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(f"assistant {' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return done


def kill_after(proc: subprocess.Popen, delay_s: float) -> bool:
    """SIGKILL `proc` `delay_s` after now; False when it had already finished by then."""
    try:
        proc.wait(timeout=delay_s)
        return False
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return True


def kill_when(proc: subprocess.Popen, condition: Callable[[], bool], timeout_s: float = 300) -> tuple[bool, float]:
    """SIGKILL `proc` as soon as `condition()` holds (polled); (whether it was killed, when)."""
    began = time.monotonic()
    while proc.poll() is None and time.monotonic() - began < timeout_s:
        if condition():
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True, time.monotonic() - began
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    return False, time.monotonic() - began


def timed(fn: Callable[[], object]) -> float:
    began = time.monotonic()
    fn()
    return time.monotonic() - began


def integrity(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def check_integrity(home: Path, trial: Trial) -> None:
    for path in [home / "assistant.db", home / "chroma" / "chroma.sqlite3"]:
        if path.exists() and (result := integrity(path)) != "ok":
            trial.problems.append(f"integrity_check of {path.name}: {result}")


def rows(path: Path, sql: str, params: tuple = ()) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


# answer --------------------------------------------------------------------------------------------


class AnswerScenario:
    name = "answer"
    row = "SIGKILL during an answer"  # its row in docs/reliability.md
    what = "SIGKILL during `assistant ask` (start-up, model load, streaming, saving)"

    def __init__(self, work: Path, max_tokens: int = 400, verify_continue: bool = True) -> None:
        self.work, self.max_tokens, self.verify_continue = work, max_tokens, verify_continue
        self.template = work / "answer-template"
        run(self.template, "ask", "First question: what is a GGUF file?", ASSISTANT_MAX_TOKENS="24")
        self.before = rows(self.template / "assistant.db", "SELECT id, role, content, status FROM messages")
        # A clean run of the command the trials kill, to spread the kills over all of it.
        clean = work / "answer-clean"
        shutil.copytree(self.template, clean)
        self.span_s = timed(lambda: run(clean, "ask", "-c", "1", LONG_QUESTION,
                                        ASSISTANT_MAX_TOKENS=str(max_tokens)))

    def trial(self, number: int, rng: random.Random) -> Trial:
        home = self.work / f"answer-{number}"
        shutil.copytree(self.template, home)
        trial = Trial(self.name, number, rng.uniform(0.0, self.span_s))
        printed_file = home.parent / f"answer-{number}.out"
        with printed_file.open("w") as out:
            proc = start(home, "ask", "-c", "1", LONG_QUESTION, stdout=out,
                         ASSISTANT_MAX_TOKENS=str(self.max_tokens))
            killed = kill_after(proc, trial.delay_s)
        printed = printed_file.read_text()
        check_integrity(home, trial)
        db = home / "assistant.db"
        after = rows(db, "SELECT id, role, content, status FROM messages")
        if after[: len(self.before)] != self.before:
            trial.problems.append("an earlier turn changed")
        new = after[len(self.before):]
        questions = [r for r in new if r[1] == "user"]
        answers = [r for r in new if r[1] == "assistant"]
        if printed.strip() and not questions:
            trial.problems.append("the answer was streaming but the question is not saved")
        if len(questions) > 1 or len(answers) > 1:
            trial.problems.append(f"duplicated rows: {len(questions)} questions, {len(answers)} answers")
        saved = answers[0][2] if answers else ""
        if answers and not printed.startswith(saved.rstrip()[:len(printed)]):
            trial.problems.append("the saved answer is not what was streamed")
        if not killed:
            trial.stage = "finished before the kill"
            if not answers or answers[0][3] != "complete":
                trial.problems.append("a finished answer is not saved complete")
        elif not questions:
            trial.stage = "before the question was saved"
        elif not answers:
            trial.stage = f"question saved, {len(printed)} chars streamed, none saved yet"
        else:
            trial.stage = f"partial answer saved: {len(saved)} of {len(printed)} chars streamed"
        if self.verify_continue:  # the conversation goes on after the crash
            try:
                run(home, "ask", "-c", "1", "And in one sentence?", ASSISTANT_MAX_TOKENS="8")
            except AssertionError as exc:
                trial.problems.append(f"the next question failed: {exc}")
        shutil.rmtree(home)
        printed_file.unlink()
        return trial


# index ---------------------------------------------------------------------------------------------


def chroma_ids(home: Path) -> set[int]:
    import chromadb
    from chromadb.api.client import SharedSystemClient
    from chromadb.config import Settings

    client = chromadb.PersistentClient(str(home / "chroma"), Settings(anonymized_telemetry=False))
    try:
        return {int(i) for i in client.get_collection("chunks").get(include=[])["ids"]}
    finally:
        SharedSystemClient.clear_system_cache()


def index_counts(home: Path) -> dict[str, object]:
    db = home / "assistant.db"
    return {
        "files": rows(db, "SELECT COUNT(*) FROM files WHERE state = 'indexed'")[0][0],
        "pending": rows(db, "SELECT COUNT(*) FROM files WHERE state != 'indexed'")[0][0],
        "chunks": rows(db, "SELECT COUNT(*) FROM chunks")[0][0],
        "texts": sorted(r[0] for r in rows(db, "SELECT text FROM chunks")),
    }


class IndexScenario:
    name = "index"
    row = "SIGKILL during indexing"  # its row in docs/reliability.md
    what = "SIGKILL during `assistant index` (start-up, scanning, embedding, storing), then resume"

    def __init__(self, work: Path, files: int = 400) -> None:
        from tests.rag_corpus import write_many_files

        self.work = work
        self.corpus = write_many_files(work / "corpus", files)
        clean = work / "index-clean"
        first = timed(lambda: run(clean, "index", str(self.corpus), "--json"))
        # A first run is slower (cold caches): the kills spread over the faster of two clean runs.
        self.span_s = min(first, timed(lambda: run(work / "index-clean-2", "index", str(self.corpus), "--json")))
        self.clean = index_counts(clean)
        assert self.clean["files"] == files and chroma_ids(clean) == set(
            r[0] for r in rows(clean / "assistant.db", "SELECT id FROM chunks"))

    def trial(self, number: int, rng: random.Random) -> Trial:
        home = self.work / f"index-{number}"
        trial = Trial(self.name, number, rng.uniform(0.0, self.span_s))
        killed = kill_after(start(home, "index", str(self.corpus), "--json"), trial.delay_s)
        db = home / "assistant.db"
        if not killed:
            trial.stage = "finished before the kill"
        elif not db.exists():
            trial.stage = "before the database was opened"
        else:
            counts = index_counts(home)
            if counts["files"]:
                trial.stage = "all files indexed, not finished" if counts["files"] == self.clean["files"] \
                    else "some files indexed"
            else:
                trial.stage = "chunks stored, none embedded yet" if counts["chunks"] else "before any chunk was stored"
            trial.stage += f": {counts['files']} of {self.clean['files']} files, {counts['chunks']} chunks"
        check_integrity(home, trial)
        run(home, "index", str(self.corpus), "--json")  # resume
        check_integrity(home, trial)
        counts = index_counts(home)
        for key in ("files", "pending", "chunks", "texts"):
            if counts[key] != self.clean[key]:
                shown = len(counts[key]) if key == "texts" else counts[key]  # type: ignore[arg-type]
                trial.problems.append(f"after resuming, {key} differ from a clean run ({shown})")
        ids = {r[0] for r in rows(db, "SELECT id FROM chunks")}
        vectors = chroma_ids(home)
        if ids != vectors:
            trial.problems.append(f"SQLite and Chroma disagree: {len(ids - vectors)} chunks without a vector, "
                                  f"{len(vectors - ids)} vectors without a chunk")
        shutil.rmtree(home)
        return trial


# rebuild -------------------------------------------------------------------------------------------

REBUILD_META = "SELECT value FROM index_meta WHERE key = 'vector_rebuild'"


def write_long_notes(root: Path, files: int, paragraphs: int = 48) -> Path:
    """Notes of ten chunks each: a rebuild then embeds more than one batch, as a real folder does
    (the 54 files of the report held 647 chunks), so a kill can land between two of them."""
    root.mkdir(parents=True, exist_ok=True)
    topics = ["garden", "budget", "travel", "recipes", "physics", "history", "music", "sailing"]
    for i in range(files):
        topic = topics[i % len(topics)]
        body = "\n\n".join(f"Paragraph {p} of note {i} about {topic}: the value recorded was {i * 7 + p} "
                            f"units, and on day {p % 28 + 1} it was decided to carry on with it." for p in
                            range(paragraphs))
        (root / f"note_{i:04d}.md").write_text(f"# Note {i} on {topic}\n\n{body}\n")
    os.sync()
    return root


def vector_ids(home: Path) -> set[int]:
    """Chroma's chunk ids, or none when the collection is not there (killed while recreating it)."""
    try:
        return chroma_ids(home)
    except Exception as exc:  # chromadb's NotFoundError, a ValueError in older versions
        if "does not exist" in str(exc):
            return set()
        raise


def doctor_index_check(home: Path) -> dict:
    """The `index` check of `assistant doctor --json` (the command exits 1 when any check fails)."""
    done = subprocess.run([sys.executable, "-m", "app", "doctor", "--json"], cwd=ROOT, env=env_for(home),
                          capture_output=True, text=True, timeout=300)
    checks = [c for c in json.loads(done.stdout) if c["section"] == "index"]
    assert len(checks) == 1, f"doctor has no index check: {done.stdout[-2000:]} {done.stderr[-2000:]}"
    return checks[0]


class RebuildScenario:
    name = "rebuild"
    row = "SIGKILL during a rebuild of the vector store"  # its row in docs/reliability.md
    what = "SIGKILL during `assistant index --rebuild` (start-up, dropping, re-embedding), then `assistant index`"

    def __init__(self, work: Path, files: int = 40, measure: bool = True) -> None:
        """`measure`: time a clean rebuild, to spread random kills over it (trials that kill at a
        moment of their own choosing need none)."""
        self.work = work
        self.corpus = write_long_notes(work / "corpus", files)
        self.template = work / "rebuild-template"
        run(self.template, "index", str(self.corpus), "--json")
        self.chunks = {r[0] for r in rows(self.template / "assistant.db", "SELECT id FROM chunks")}
        assert vector_ids(self.template) == self.chunks and len(self.chunks) > 256  # more than one batch
        self.span_s = 0.0
        if measure:
            clean = work / "rebuild-clean"
            shutil.copytree(self.template, clean)
            self.span_s = timed(lambda: run(clean, "index", "--rebuild"))
            shutil.rmtree(clean)

    def trial(self, number: int, rng: random.Random, delay_s: float | None = None,
              look: Callable[[str, Path], None] | None = None, at_step: str | None = None) -> Trial:
        """`delay_s` instead of a random kill time, or `at_step`: the kill lands as soon as the
        rebuild records that step ("reset", "refill"); `look(moment, home)` is called "killed" and
        "repaired" (a test's extra checks)."""
        home = self.work / f"rebuild-{number}"
        shutil.copytree(self.template, home)
        proc = start(home, "index", "--rebuild")
        if at_step is not None:
            def reached() -> bool:
                try:
                    return rows(home / "assistant.db", REBUILD_META) == [(at_step,)]
                except sqlite3.OperationalError:  # locked for a moment by the writer
                    return False

            killed, when = kill_when(proc, reached)
            trial = Trial(self.name, number, when)
        else:
            trial = Trial(self.name, number, rng.uniform(0.0, self.span_s) if delay_s is None else delay_s)
            killed = kill_after(proc, trial.delay_s)
        check_integrity(home, trial)
        left = vector_ids(home)
        step = rows(home / "assistant.db", REBUILD_META)
        if not killed:
            trial.stage = "finished before the kill"
        elif not step:
            trial.stage = ("before the rebuild started, or after it ended" if left == self.chunks
                           else "vectors missing, and no rebuild recorded")
        else:
            trial.stage = "vectors not dropped yet" if step[0][0] == "reset" else "vectors dropped, re-embedding"
        trial.stage += f": {len(left)} of {len(self.chunks)} vectors left"
        if look:
            look("killed", home)
        run(home, "index", str(self.corpus), "--json")  # repairs what the kill left
        check_integrity(home, trial)
        vectors = vector_ids(home)
        ids = {r[0] for r in rows(home / "assistant.db", "SELECT id FROM chunks")}
        if ids != self.chunks:
            trial.problems.append(f"chunks changed: {len(ids)} instead of {len(self.chunks)}")
        if vectors != ids:
            trial.problems.append(f"after `assistant index`, {len(ids - vectors)} chunks have no vector and "
                                  f"{len(vectors - ids)} vectors no chunk")
        if rows(home / "assistant.db", REBUILD_META):
            trial.problems.append("the rebuild is still marked unfinished")
        if rows(home / "assistant.db", "SELECT COUNT(*) FROM files WHERE state != 'indexed'")[0][0]:
            trial.problems.append("files left waiting for vectors")
        if look:
            look("repaired", home)
        shutil.rmtree(home)
        return trial


# migration -----------------------------------------------------------------------------------------

OLD_SCHEMA = 7


def old_database(path: Path, conversations: int = 3000, per_conversation: int = 20) -> None:
    """A database as version OLD_SCHEMA of the app left it, full of conversations."""
    from memory.migrations import MIGRATIONS
    from memory.store import _statements

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    for number, script in enumerate(MIGRATIONS[:OLD_SCHEMA], 1):
        conn.execute("BEGIN")
        for statement in _statements(script):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {number}")
        conn.execute("COMMIT")
    stamp = "2025-01-01T00:00:00+00:00"
    words = "river mountain lantern harbour violin meadow copper falcon orchard glacier".split()
    conn.execute("BEGIN")
    for c in range(1, conversations + 1):
        conn.execute("INSERT INTO conversations (id, title, created_at, updated_at) VALUES (?, ?, ?, ?)",
                     [c, f"chat {c}", stamp, stamp])
        conn.executemany(
            "INSERT INTO messages (conversation_id, role, content, created_at) VALUES (?, ?, ?, ?)",
            [(c, "user" if m % 2 == 0 else "assistant",
              f"message {m} of chat {c}: " + " ".join(words[(c + m + k) % 10] for k in range(40)), stamp)
             for m in range(per_conversation)],
        )
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    os.chmod(path, 0o600)


class MigrationScenario:
    name = "migration"
    row = "SIGKILL during a migration"  # its row in docs/reliability.md
    what = f"SIGKILL while `assistant history` migrates a schema-{OLD_SCHEMA} database of 60k messages"

    def __init__(self, work: Path) -> None:
        from memory.migrations import MIGRATIONS

        self.work, self.latest = work, len(MIGRATIONS)
        self.template = work / "migration-template"
        self.template.mkdir(parents=True, mode=0o700)
        old_database(self.template / "assistant.db")
        self.messages = rows(self.template / "assistant.db", "SELECT COUNT(*) FROM messages")[0][0]
        clean = work / "migration-clean"
        shutil.copytree(self.template, clean)
        migrating = timed(lambda: run(clean, "history", "-n", "1"))
        # Kills land from half-way through start-up (a migrated database opens after about
        # `opening` seconds) to the end of a migrating run: most of them inside the migration.
        opening = timed(lambda: run(clean, "history", "-n", "1"))
        self.window = (opening / 2, max(migrating, opening))

    def trial(self, number: int, rng: random.Random) -> Trial:
        home = self.work / f"migration-{number}"
        shutil.copytree(self.template, home)
        trial = Trial(self.name, number, rng.uniform(*self.window))
        killed = kill_after(start(home, "history", "-n", "1"), trial.delay_s)
        db = home / "assistant.db"
        wal = home / "assistant.db-wal"
        pending = wal.exists() and wal.stat().st_size > 0  # written by a migration (maybe not committed)
        check_integrity(home, trial)
        version = rows(db, "PRAGMA user_version")[0][0]
        trial.stage = f"schema {version}" + (" with migration pages in the WAL" if pending else "")
        trial.stage += "" if killed else ", finished before the kill"
        if not OLD_SCHEMA <= version <= self.latest:
            trial.problems.append(f"schema version {version}")
        if version >= 8 and rows(db, "SELECT COUNT(*) FROM messages_fts")[0][0] != self.messages:
            trial.problems.append("the search index misses messages")
        if rows(db, "SELECT COUNT(*) FROM messages")[0][0] != self.messages:
            trial.problems.append("messages lost")
        try:
            found = run(home, "history", "-s", "lantern violin")
            if "chat" not in found.stdout:
                trial.problems.append("search finds nothing after the migration")
        except AssertionError as exc:
            trial.problems.append(f"reopening failed: {exc}")
        if rows(db, "PRAGMA user_version")[0][0] != self.latest:
            trial.problems.append("reopening did not finish the migration")
        check_integrity(home, trial)
        shutil.rmtree(home)
        return trial


# backup --------------------------------------------------------------------------------------------


class BackupScenario:
    name = "backup"
    row = "SIGKILL during a backup"  # its row in docs/reliability.md
    what = "SIGKILL during `assistant backup` of a 60k-message database"

    def __init__(self, work: Path) -> None:
        self.work = work
        self.template = work / "backup-template"
        self.template.mkdir(parents=True, mode=0o700)
        old_database(self.template / "assistant.db")
        run(self.template, "history", "-n", "1")  # migrated to the current schema
        self.counts = self._counts(self.template / "assistant.db")
        clean = work / "backup-clean"
        shutil.copytree(self.template, clean)
        opening = timed(lambda: run(clean, "history", "-n", "1"))
        self.window = (opening / 2, max(opening, timed(lambda: run(clean, "backup", str(clean / "b.db")))))

    @staticmethod
    def _counts(db: Path) -> tuple:
        return tuple(rows(db, f"SELECT COUNT(*) FROM {t}")[0][0] for t in ("conversations", "messages"))

    def trial(self, number: int, rng: random.Random) -> Trial:
        from memory.errors import StoreError
        from memory.store import Store

        home = self.work / f"backup-{number}"
        shutil.copytree(self.template, home)
        target = home / "saved" / "backup.db"
        trial = Trial(self.name, number, rng.uniform(*self.window))
        killed = kill_after(start(home, "backup", str(target)), trial.delay_s)
        check_integrity(home, trial)
        if self._counts(home / "assistant.db") != self.counts:
            trial.problems.append("the database changed")
        litter = sorted(p.name for p in target.parent.glob(".*partial*")) if target.parent.exists() else []
        if target.exists():
            trial.stage = "backup complete" + ("" if killed else ", finished before the kill")
            try:
                Store.check_backup(target)
                if self._counts(target) != self.counts:
                    trial.problems.append("the backup misses rows")
            except StoreError as exc:
                trial.problems.append(f"a damaged backup at the target name: {exc}")
            if target.stat().st_mode & 0o077:
                trial.problems.append(f"the backup is readable by others ({oct(target.stat().st_mode)})")
            target.unlink()
        else:
            trial.stage = "killed before the backup was complete" + (f" ({len(litter)} partial file)"
                                                                    if litter else "")
        for name in litter:
            if (target.parent / name).stat().st_mode & 0o077:
                trial.problems.append("a partial copy is readable by others")
        try:
            run(home, "backup", str(target))  # the same name works next time, and cleans up
            Store.check_backup(target)
            left = list(target.parent.glob(".*partial*"))
            if left:
                trial.problems.append(f"partial files left after the next backup: {left}")
        except (AssertionError, StoreError) as exc:
            trial.problems.append(f"the next backup failed: {exc}")
        shutil.rmtree(home)
        return trial


# New scenarios go last: each scenario's seed in `make soak` is its position here.
SCENARIOS = {s.name: s for s in (AnswerScenario, IndexScenario, MigrationScenario, BackupScenario,
                                  RebuildScenario)}


def run_trials(scenario: object, trials: int, seed: int, report: Callable[[Trial], None] = print) -> list[Trial]:
    rng = random.Random(seed)
    done = []
    for number in range(1, trials + 1):
        trial = scenario.trial(number, rng)  # type: ignore[attr-defined]
        report(trial)
        done.append(trial)
    return done


def summary(trials: list[Trial]) -> dict[str, object]:
    """Counts: trials, failed ones, where the kills landed (numbers as N), and what was lost."""
    landed = Counter(re.sub(r"\d+(\.\d+)?", "N", t.stage.split(":")[0]) for t in trials)
    return {"trials": len(trials), "failed": sum(bool(t.problems) for t in trials),
            "stages": [f"{stage} ({count})" for stage, count in landed.most_common()],
            "problems": sorted({p for t in trials for p in t.problems})}


if __name__ == "__main__":  # python -m tests.faults SCENARIO TRIALS SEED WORKDIR
    name, count, seed, work = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
    work.mkdir(parents=True, exist_ok=True)
    result = run_trials(SCENARIOS[name](work), count, seed)
    print(json.dumps(summary(result)))
