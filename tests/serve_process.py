"""`assistant serve` and `assistant web` as real processes on 127.0.0.1 (any free port), for the
tests and bench/bench_serve.py: started in their own data folder, stopped with SIGINT as Ctrl-C
would; and `prepare_home`, a data folder with an indexed folder and a memory."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FACT = "My cat Miso is orange and sleeps on the radiator every afternoon."
MEMORY = "The user's favourite colour is teal."


def prepare_home(home: Path, notes: Path) -> None:
    """A data folder with an indexed folder (notes/pets.md holds FACT on line 5) and one long-term
    memory, made in this process before a server starts on it."""
    from engine import Engine, load_settings

    notes.mkdir(parents=True, exist_ok=True)
    (notes / "pets.md").write_text(f"# Pets\n\nSome words first.\n\n{FACT}\n\nThe dog Rex likes the park.\n")
    saved = os.environ.get("ASSISTANT_HOME")
    os.environ["ASSISTANT_HOME"] = str(home)  # settings and paths of that data folder

    async def run() -> None:
        engine = Engine(load_settings(), database=home / "assistant.db")
        try:
            await asyncio.to_thread((await engine.knowledge()).index, notes)
            await engine.memories.add(MEMORY)
        finally:
            await engine.close()

    try:
        asyncio.run(run())
    finally:
        if saved is None:
            os.environ.pop("ASSISTANT_HOME")
        else:
            os.environ["ASSISTANT_HOME"] = saved


class ServeProcess:
    command = "serve"
    announced = re.compile(r"on (http://\S+/v1)")  # the line printed once it is ready

    def __init__(self, home: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> None:
        self.home, self.args, self.timeout = home, args, timeout
        self.env = {**os.environ, "ASSISTANT_HOME": str(home), "HF_HUB_OFFLINE": "1",
                    "ANONYMIZED_TELEMETRY": "False", **(env or {})}
        self.url = ""  # http://127.0.0.1:PORT/v1
        self.log = home / "serve.log"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ServeProcess:
        self.home.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "app", self.command, "--port", "0", *self.args],
                cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.timeout
        while not self.url:
            found = self.announced.search(self.output())
            if found:
                self.url = found.group(1)
            elif self.process.poll() is not None:
                raise RuntimeError(f"assistant {self.command} exited with {self.process.returncode}:\n{self.output()}")
            elif time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"assistant {self.command} did not start:\n{self.output()}")
            else:
                time.sleep(0.05)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    @property
    def base(self) -> str:
        return self.url.removesuffix("/v1")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def rss_mb(self) -> float:
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")

    def rows(self, sql: str, *args: Any) -> list[tuple]:
        """Read the server's database (WAL: readers never block it)."""
        with sqlite3.connect(self.home / "assistant.db", timeout=10) as db:
            return db.execute(sql, args).fetchall()


class WebProcess(ServeProcess):
    """`assistant web`: `url` is the page to open (http://127.0.0.1:PORT/)."""

    command = "web"
    announced = re.compile(r"at (http://\S+/)")
