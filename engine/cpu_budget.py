"""The process's CPU budget, in one place: how many threads llama.cpp and torch may use, how their
waiting threads wait, and which work yields to the answer the user is waiting for.

Why it matters (docs/benchmarks.md, "Contention"): on a busy machine llama.cpp's and torch's
OpenMP threads wait for each other at every barrier; libgomp spins while it waits (300,000 turns
by default), so a thread whose partner lost its time slice burns its own slice spinning, and two
answers at once each ran at 0.08 of their speed alone. Three decisions fix it at the root:

- Threads come from the cores this process may really use (affinity, cgroup quota), never
  `os.cpu_count()`, and follow the cores other processes leave free, between tokens
  (`CpuMeter`): a single decode thread has no barrier to wait at, so nothing to spin on.
- How waiting threads wait is left at libgomp's default: measured (`bench_contention.py sweep`),
  OMP_WAIT_POLICY=PASSIVE cut decoding on an idle machine to 0.30x, and shorter spin counts
  (GOMP_SPINCOUNT 10,000 / 1,000) did not save two answers at once (0.04x / 0.27x), where one
  thread each kept 0.91x. ggml's own threadpool settings (`poll`) do nothing here: this
  llama.cpp is built with OpenMP, which replaces that threadpool.
- Background work (indexing) runs at a lower OS priority, pauses between small batches while an
  answer streams (`Foreground`) and embeds on the free cores, so the answer keeps the cores.

The decisions are pure functions of what was measured (`Cores`), so tests can give any machine.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

# libgomp's settings for waiting threads (llama.cpp's CPU backend and torch both use OpenMP).
# Left unset (see above); `assistant doctor` warns when PASSIVE is set in the environment.
WAIT_ENV_NAMES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
# CFS weight 655 against 1024: the answer's threads win a contended core, background work keeps
# ~40% of it. +10 (weight 110) starved `assistant index` on a machine busy with other programs:
# 0.0 files/s beside a raw llama-cpp-python answer (docs/benchmarks.md, Contention).
BACKGROUND_NICE = 2
NOISE_MARGIN = 0.3  # a core counts as taken by other processes once they keep 0.7 of it busy
MAX_PAUSE_S = 30.0  # background work waits at most this long for one answer, then goes on (niced)


@dataclass(frozen=True)
class Cores:
    """What the machine offers this process, as measured."""

    affinity: int  # logical CPUs this process may run on (sched_getaffinity)
    quota: float | None = None  # cgroup CPU quota in cores; None: unlimited
    others_busy: float = 0.0  # cores that other processes keep busy now
    logical_per_core: int = 1  # hardware threads per physical core (2 with SMT)


@dataclass(frozen=True)
class ThreadPlan:
    usable: int  # cores this process may use at all
    free: int  # of those, not kept busy by other processes now
    decode: int  # llama.cpp threads for generating a token
    batch: int  # llama.cpp threads for evaluating a prompt
    torch: int  # torch threads for embedding (background work: none while an answer streams)
    oversubscribed: bool  # other processes want more than the cores we may use
    reasons: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return (f"llama.cpp {self.decode} decode / {self.batch} prompt threads, torch {self.torch} "
                f"(of {self.usable} usable cores, {self.free} free now)")


def plan(cores: Cores, configured: int | None = None, kept: int = 0) -> ThreadPlan:
    """Thread counts for this machine now. `configured` (the n_threads setting) wins for llama.cpp;
    `kept` cores are left to this process's own other work while it decodes (the chat app's event
    loop, which draws the answer as it streams).

    Decoding is memory-bound: one thread per physical core is fastest, and a thread that shares
    its core with another process's waits at every barrier for its slower partner, so decode
    threads are the free physical cores (at least 1). Torch embeds in the background while no
    answer streams: it may use the free cores too; llama.cpp and torch never run at once."""
    reasons = []
    usable = cores.affinity
    if cores.quota is not None and cores.quota < usable:
        usable = max(1, math.floor(cores.quota))
        reasons.append(f"cgroup quota {cores.quota:g} cores")
    physical = max(1, usable // max(1, cores.logical_per_core))
    # Up to 0.7 of a core busy elsewhere is noise (a shell, a terminal, an editor): decoding on
    # one thread fewer for it would cost 14% on an idle machine. More is a core taken.
    taken = min(usable, math.floor(cores.others_busy + NOISE_MARGIN))
    free = max(1, usable - taken)
    oversubscribed = cores.others_busy >= usable - NOISE_MARGIN
    if taken:
        reasons.append(f"{cores.others_busy:.1f} cores busy with other processes")
    decode = max(1, min(physical, free // max(1, cores.logical_per_core) or 1))
    if kept:
        # The display's thread took a share of a decode thread's core: every token then waited at
        # each barrier for that thread (2 cores, bench_tui_decode: +5% in a terminal, +11% headless).
        decode = max(1, min(decode, (free - kept * cores.logical_per_core) // max(1, cores.logical_per_core)))
        reasons.append(f"{kept} core kept for the app's display")
    if configured:
        decode = configured
        reasons.append("n_threads set in the config")
    batch = max(decode, min(usable, free))  # prompt evaluation is compute-bound: every free CPU
    return ThreadPlan(usable, free, decode, batch, max(1, min(physical, free)), oversubscribed, reasons)


# measuring --------------------------------------------------------------------------------------

def affinity() -> set[int]:
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return set(range(os.cpu_count() or 1))


def cgroup_quota(root: Path = Path("/sys/fs/cgroup"),
                 self_cgroup: Path = Path("/proc/self/cgroup")) -> float | None:
    """The CPU quota of this process's cgroup in cores (v2 cpu.max, v1 cfs_quota_us), or None."""
    groups = {}
    try:
        for line in self_cgroup.read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            for name in controllers.split(",") if controllers else [""]:
                groups[name] = path.lstrip("/")
    except (OSError, ValueError):
        pass
    candidates = []
    if "" in groups:  # v2: cpu.max holds "max 100000" or "150000 100000"
        candidates.append((root / groups[""] / "cpu.max", None))
        candidates.append((root / "cpu.max", None))
    for name in ("cpu", "cpu,cpuacct"):
        if name in groups:
            candidates.append((root / "cpu" / groups[name] / "cpu.cfs_quota_us",
                               root / "cpu" / groups[name] / "cpu.cfs_period_us"))
    candidates.append((root / "cpu" / "cpu.cfs_quota_us", root / "cpu" / "cpu.cfs_period_us"))
    for quota_file, period_file in candidates:
        try:
            if period_file is None:
                quota, period = quota_file.read_text().split()[:2]
            else:
                quota, period = quota_file.read_text().strip(), period_file.read_text().strip()
        except (OSError, ValueError):
            continue
        if quota in ("max", "-1"):
            return None
        return int(quota) / int(period)
    return None


def smt_width(cpus: set[int], root: Path = Path("/sys/devices/system/cpu")) -> int:
    """Hardware threads per core, from the kernel's topology (1 where it says nothing)."""
    for cpu in sorted(cpus)[:1]:
        try:
            siblings = (root / f"cpu{cpu}" / "topology" / "thread_siblings_list").read_text().strip()
        except OSError:
            return 1
        return max(1, sum(_range_size(part) for part in siblings.split(",") if part))
    return 1


def _range_size(part: str) -> int:
    low, _, high = part.partition("-")
    return int(high) - int(low) + 1 if high else 1


def _busy_jiffies(cpus: set[int], stat: Path = Path("/proc/stat")) -> float | None:
    """Busy time of `cpus` in seconds, from /proc/stat (Linux); None elsewhere."""
    total = 0.0
    try:
        for line in stat.read_text().splitlines():
            name, *values = line.split()
            if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
                numbers = [int(v) for v in values]
                total += sum(numbers[:8]) - numbers[3] - numbers[4]  # all but idle and iowait
    except (OSError, ValueError, IndexError):
        return None
    return total / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """How many cores other processes keep busy: the machine's busy time on our CPUs minus our
    own CPU time, between two readings. Instantaneous where the load average lags by a minute.
    Without /proc (macOS, Windows) it falls back to the load average."""

    def __init__(self, cpus: set[int] | None = None) -> None:
        self.cpus = cpus or affinity()
        self._last = self._read()
        self._lock = threading.Lock()
        # Until a first interval is long enough to measure: the one-minute load average.
        self.last_busy = _others_from_loadavg()

    def _read(self) -> tuple[float, float | None, float]:
        return time.monotonic(), _busy_jiffies(self.cpus), time.process_time()

    def others_busy(self, min_interval: float = 0.2) -> float:
        """Cores busy elsewhere since the last reading (at least `min_interval` ago: shorter
        windows are all jiffy noise; until then the previous figure is returned)."""
        with self._lock:
            now = self._read()
            then = self._last
            elapsed = now[0] - then[0]
            if now[1] is None or then[1] is None:
                return max(0.0, os.getloadavg()[0] - 1) if hasattr(os, "getloadavg") else 0.0
            if elapsed < min_interval:
                return self.last_busy
            self._last = now
            others = (now[1] - then[1]) - (now[2] - then[2])
            self.last_busy = max(0.0, others / elapsed)
            return self.last_busy


def measure(meter: CpuMeter | None = None) -> Cores:
    cpus = affinity()
    busy = meter.others_busy() if meter is not None else _others_from_loadavg()
    return Cores(len(cpus), cgroup_quota(), busy, smt_width(cpus))


def _others_from_loadavg() -> float:
    """Before any reading of ours: the one-minute load average (which includes us, barely)."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0


# who goes first ---------------------------------------------------------------------------------

class Foreground:
    """Set while an answer streams; background work waits on it between batches. Owned by the
    engine; the indexer gets only `wait` (memory never imports engine)."""

    def __init__(self) -> None:
        self._active = 0
        self._cond = threading.Condition()

    @property
    def busy(self) -> bool:
        return self._active > 0

    @contextlib.contextmanager
    def answering(self) -> Iterator[None]:
        with self._cond:
            self._active += 1
        try:
            yield
        finally:
            with self._cond:
                self._active -= 1
                self._cond.notify_all()

    def wait(self, timeout: float = MAX_PAUSE_S) -> float:
        """Block while an answer streams (at most `timeout`); returns the seconds waited."""
        start = time.monotonic()
        with self._cond:
            self._cond.wait_for(lambda: self._active == 0, timeout)
        return time.monotonic() - start


def lower_thread_priority(nice: int = BACKGROUND_NICE) -> bool:
    """Lower the OS priority of the calling thread only (Linux: a thread is a task with its own
    nice value). Threads it starts later (torch's OpenMP team) inherit it. It cannot be raised
    again without privileges: call it only in a thread that does background work and then ends."""
    if not hasattr(os, "setpriority") or not hasattr(threading, "get_native_id"):
        return False
    try:
        tid = threading.get_native_id()
        current = os.getpriority(os.PRIO_PROCESS, tid)
        if current < nice:
            os.setpriority(os.PRIO_PROCESS, tid, nice)
        return True
    except OSError:
        return False


def in_background_thread(work: Callable[[], T], name: str = "background",
                         stop: threading.Event | None = None) -> T:
    """Run `work` in a fresh thread at background priority and wait for it; its result or its
    exception comes back here. A fresh thread, because a lowered priority is for good. Interrupted
    while waiting (Ctrl-C), it sets `stop` and waits for `work` to finish its step first."""
    outcome: dict[str, object] = {}

    def run() -> None:
        lower_thread_priority()
        try:
            outcome["value"] = work()
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    try:
        thread.join()
    except BaseException:
        if stop is not None:
            stop.set()
            thread.join()
        raise
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]


# the process's budget ---------------------------------------------------------------------------

REPLAN_S = 0.5  # while decoding, how often the thread count follows the machine's load


class CpuBudget:
    """The CPU budget of this process: measures the machine, plans threads, and says who goes
    first. One per process (`process_budget()`): the CLI, the TUI, the server and the indexer
    all share the same cores."""

    def __init__(self, meter: CpuMeter | None = None) -> None:
        self.meter = meter or CpuMeter()
        self.foreground = Foreground()
        self.kept = 0  # cores kept for the chat app's display while it runs (`keep_a_core_for_the_display`)

    def plan(self, configured: int | None = None) -> ThreadPlan:
        return plan(measure(self.meter), configured, self.kept)

    def pace_background(self) -> int:
        """Called by background work between batches: waits while an answer streams, then says
        how many torch threads the free cores allow."""
        self.foreground.wait()
        return self.plan().torch


_process_budget: CpuBudget | None = None
_process_lock = threading.Lock()


def process_budget() -> CpuBudget:
    global _process_budget
    with _process_lock:
        if _process_budget is None:
            _process_budget = CpuBudget()
        return _process_budget


@contextlib.contextmanager
def keep_a_core_for_the_display() -> Iterator[None]:
    """While the chat app runs, decoding leaves one core to its event loop, which draws every
    streamed piece of the answer (docs/benchmarks.md, "The chat app's decode speed")."""
    budget = process_budget()
    budget.kept += 1
    try:
        yield
    finally:
        budget.kept -= 1
