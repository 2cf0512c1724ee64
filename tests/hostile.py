"""Hostile servers, many times over: the real `assistant ask` against tests/openai_server.py's
hostile behaviours, with seeded random timeouts, drip rates and answer limits.

Trial N takes case N of CASES (round robin) and draws its settings from `random.Random(seed)`.
Whatever the server does, each run must end within its timeouts (plus start-up and a local
answer), grow the process by no more than MEMORY_MARGIN over a clean run, make the server send
little (the client stops reading), store a bounded answer, and fall back to the local model only
where that is allowed: before the first token, when a local backend follows the remote one.

    keepalive     SSE comment lines more often than the read timeout, forever: total_timeout_s
                  ends them and the local model answers
    endless_500   a 500 whose body never ends: a short error naming HTTP 500, exit 1
    endless_line  a `data:` line that never ends: refused at 1 MiB, the local model answers
    huge          50 MB of answer whatever max_tokens says: cut at max_tokens, stored small
    drip          real answer text, one word at a time just inside the read timeout: ended by
                  total_timeout_s (partial kept, never a fallback after text) or by max_tokens
    hang          accepts and never answers: the read timeout passes it to the local model

`make soak` (tests/soak.py) runs 50 trials; tests/test_remote.py tries each case once, in-process.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.faults import ROOT, Trial, env_for, rows
from tests.openai_server import FakeOpenAI

READ_LIMIT = 16 << 20  # bytes a server may get to send before the client stops reading (as in test_remote)
MEMORY_MARGIN = 128 << 20  # over a clean run's peak RSS; the unbounded readers grew by gigabytes
RUN_LIMIT_S = 180  # a run still going after this is killed and counted as a failure
QUESTION = "Say hello."


@dataclass(frozen=True)
class Case:
    behaviour: str  # the server's, tests/openai_server.py
    fallback: bool  # whether the local model follows the remote one in the route


CASES = {c.behaviour: c for c in (
    Case("keepalive", fallback=True), Case("endless_500", fallback=False), Case("endless_line", fallback=True),
    Case("huge", fallback=False), Case("drip", fallback=True), Case("hang", fallback=True),
)}


def _config(url: str, fallback: bool, read_s: float, total_s: float, max_tokens: int) -> str:
    backends = ["fake", "local"] if fallback else ["fake"]
    return (f"backends = {json.dumps(backends)}\nallow_cloud = true\ncache = false\nmax_tokens = {max_tokens}\n"
            f"[providers.fake]\nbase_url = {json.dumps(url)}\nmodel = \"fake-model\"\n"
            f"read_timeout_s = {read_s:.2f}\ntotal_timeout_s = {total_s:.2f}\nmax_retries = 0\nbackoff_s = 0.05\n")


@dataclass
class Run:
    code: int | None  # None: still running at RUN_LIMIT_S, killed
    seconds: float
    peak_rss: int  # bytes, the process's own high-water mark (wait4)
    stderr: str


def run_ask(home: Path) -> Run:
    """`assistant ask` on `home`, timed, with the process's peak RSS."""
    err = home / "stderr.txt"
    with err.open("w") as stderr:
        began = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "app", "ask", QUESTION], cwd=ROOT, env=env_for(home),
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
        code: int | None = None
        while time.monotonic() - began < RUN_LIMIT_S:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                code = os.waitstatus_to_exitcode(status)
                break
            time.sleep(0.02)
        else:
            proc.kill()
            _, _, usage = os.wait4(proc.pid, 0)
        proc.returncode = -9 if code is None else code  # reaped here: Popen must not wait again
        seconds = time.monotonic() - began
    return Run(code, seconds, usage.ru_maxrss * 1024, err.read_text())


@dataclass
class HostileTrial(Trial):
    def line(self) -> str:
        verdict = "ok" if not self.problems else "FAILED: " + "; ".join(self.problems)
        return f"{self.scenario} #{self.number}: {self.stage} -> {verdict}"


class HostileScenario:
    name = "hostile"
    row = "A hostile remote server"  # its row in docs/reliability.md
    what = ("Hostile servers against `assistant ask`: endless keep-alives, an endless error body, a line "
            "that never ends, 50 MB past max_tokens, a slow drip, a hang")

    def __init__(self, work: Path) -> None:
        self.work = work
        self.server = FakeOpenAI(words=[f" w{i}" for i in range(100_000)]).__enter__()
        # Clean runs, to measure against: the remote answering well, and the local model answering.
        self.server.words, drip_words = ["Hello", " there", "."], self.server.words
        remote = self._clean("remote", fallback=False)
        self.server.default = "hang"  # a dead remote: the clean local answer comes after its read timeout
        local = self._clean("local", fallback=True)
        self.server.words = drip_words
        self.peak_rss = {False: remote.peak_rss, True: local.peak_rss}  # by whether the local model may load
        self.local_s = local.seconds  # start-up, the read timeout (0.5 s) and a local answer

    def _clean(self, name: str, fallback: bool) -> Run:
        home = self.work / f"hostile-clean-{name}"
        home.mkdir(parents=True)
        (home / "config.toml").write_text(_config(self.server.url, fallback, 0.5, 30.0, 24))
        done = run_ask(home)
        assert done.code == 0, f"a clean {name} answer failed: {done.stderr[-2000:]}"
        shutil.rmtree(home)
        return done

    def close(self) -> None:
        self.server.__exit__()

    def trial(self, number: int, rng: random.Random) -> Trial:
        case = list(CASES.values())[(number - 1) % len(CASES)]
        read_s, total_s = rng.uniform(0.5, 2.0), rng.uniform(1.0, 4.0)
        max_tokens = rng.randint(8, 64)
        self.server.keepalive_s = rng.uniform(0.05, 0.8) * read_s
        self.server.chunk_delay_s = rng.uniform(0.2, 0.8) * read_s if case.behaviour == "drip" else 0.0
        self.server.default = "ok" if case.behaviour == "drip" else case.behaviour
        home = self.work / f"hostile-{number}"
        home.mkdir(parents=True)
        (home / "config.toml").write_text(_config(self.server.url, case.fallback, read_s, total_s, max_tokens))
        requests = len(self.server.requests)
        sent = len(self.server.sent)
        done = run_ask(home)
        trial = HostileTrial(self.name, number, 0.0, case.behaviour)
        problems = trial.problems
        if done.code is None:
            problems.append(f"{case.behaviour}: still running after {RUN_LIMIT_S} s")
        # Start-up and a local answer (measured clean, doubled for a busy machine), plus the timeouts.
        allowed = 2 * self.local_s + total_s + 10
        if done.seconds > allowed:
            problems.append(f"{case.behaviour}: ran {done.seconds:.1f} s, more than {allowed:.1f} s")
        clean_rss = self.peak_rss[case.fallback]
        if done.peak_rss > clean_rss + MEMORY_MARGIN:
            problems.append(f"{case.behaviour}: peak RSS {done.peak_rss >> 20} MiB against "
                            f"{clean_rss >> 20} MiB for a clean answer")
        if any(n > READ_LIMIT for n in self.server.sent[sent:]):
            problems.append(f"{case.behaviour}: the server got to send {max(self.server.sent[sent:]):,} bytes")
        if len(self.server.requests) - requests != 1:
            problems.append(f"{case.behaviour}: {len(self.server.requests) - requests} requests (max_retries = 0)")
        db = home / "assistant.db"
        answers = rows(db, "SELECT r.backend, r.status, r.error, r.output_tokens, m.content, m.status "
                           "FROM responses r LEFT JOIN messages m ON m.id = r.message_id")
        if len(answers) != 1:
            problems.append(f"{case.behaviour}: {len(answers)} response rows")
        else:
            outcome = self._expect(case, answers[0], done, max_tokens, problems)
            trial.stage = (f"{outcome}: read timeout {read_s:.1f} s, total {total_s:.1f} s, max_tokens {max_tokens}, "
                           f"ran {done.seconds:.1f} s, peak RSS {done.peak_rss >> 20} MiB")
        if db.stat().st_size > 5 << 20:
            problems.append(f"{case.behaviour}: the database grew to {db.stat().st_size:,} bytes")
        if not problems:
            shutil.rmtree(home)
        return trial

    @staticmethod
    def _expect(case: Case, answer: tuple, done: Run, max_tokens: int, problems: list[str]) -> str:
        """Checks the stored answer against what the case allows; returns what happened, in words."""
        backend, status, error, output_tokens, text, message_status = answer
        text = text or ""
        what = case.behaviour
        if case.behaviour in ("keepalive", "endless_line", "hang"):  # nothing usable before a first token
            if (done.code, backend, status) != (0, "local", "ok") or not text:
                problems.append(f"{what}: no local answer (exit {done.code}, {backend} {status}): "
                                f"{done.stderr[-500:]}")
            why = {"keepalive": ("total_timeout_s",), "endless_line": ("longer than 1 MiB",),
                   "hang": ("sent nothing for", "total_timeout_s")}[what]  # whichever timeout is shorter
            if not any(reason in done.stderr for reason in why):
                problems.append(f"{what}: the passed-over note does not say why ({why!r}): {done.stderr[-500:]}")
        elif case.behaviour == "endless_500":
            if done.code != 1 or "HTTP 500" not in done.stderr or len(done.stderr) > 4000:
                problems.append(f"{what}: exit {done.code} and {len(done.stderr):,} characters of error")
            return "endless error body, a short error"
        elif case.behaviour == "huge":
            if done.code != 0 or status != "ok" or not 0 < len(text) <= max(4096, 16 * max_tokens):
                problems.append(f"{what}: exit {done.code}, {status}, {len(text):,} characters stored")
            if output_tokens is None or output_tokens > max_tokens:
                problems.append(f"{what}: {output_tokens} output tokens for max_tokens {max_tokens}")
        elif case.behaviour == "drip":  # text arrived: never a fallback, and what came is kept
            if backend != "fake":
                problems.append(f"{what}: answered by {backend} after the remote's text had arrived")
            if status == "ok":
                if done.code != 0 or len(text.split()) > max_tokens:
                    problems.append(f"{what}: exit {done.code}, {len(text.split())} words for max_tokens {max_tokens}")
                return "drip, whole answer within the deadline"
            if done.code != 1 or "total_timeout_s" not in (error or "") or not text or message_status != "partial":
                problems.append(f"{what}: exit {done.code}, {status} ({error}), {len(text)} characters kept "
                                f"as {message_status}")
            return "drip, cut by total_timeout_s, partial kept"
        return what + (", fell back to local" if case.fallback else "")


def run_hostile_trials(work: Path, trials: int, seed: int, report=print) -> list[Trial]:  # noqa: ANN001
    scenario = HostileScenario(work)
    rng = random.Random(seed)
    done = []
    try:
        for number in range(1, trials + 1):
            trial = scenario.trial(number, rng)
            report(trial)
            done.append(trial)
    finally:
        scenario.close()
    return done
