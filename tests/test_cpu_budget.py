"""The CPU budget's decisions (engine/cpu_budget.py): given cores, quota and load, which thread
counts; how the quota and topology are read; who waits for whom."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from engine import cpu_budget
from engine.cpu_budget import Cores, CpuMeter, Foreground, plan


def test_an_idle_two_core_machine_decodes_and_embeds_on_both_cores() -> None:
    p = plan(Cores(affinity=2))
    assert (p.usable, p.free, p.decode, p.batch, p.torch) == (2, 2, 2, 2, 2)
    assert not p.oversubscribed


def test_one_core_busy_elsewhere_leaves_one_thread_and_no_oversubscription_warning() -> None:
    p = plan(Cores(affinity=2, others_busy=1.0))
    assert (p.free, p.decode, p.torch) == (1, 1, 1)
    assert not p.oversubscribed
    assert any("busy with other processes" in r for r in p.reasons)


def test_every_core_busy_elsewhere_still_decodes_on_one_thread_and_says_oversubscribed() -> None:
    p = plan(Cores(affinity=2, others_busy=3.0))
    assert (p.free, p.decode, p.batch, p.torch) == (1, 1, 1, 1)
    assert p.oversubscribed


def test_a_little_background_noise_does_not_take_a_core() -> None:
    assert plan(Cores(affinity=2, others_busy=0.3)).decode == 2
    assert plan(Cores(affinity=2, others_busy=0.65)).decode == 2
    assert plan(Cores(affinity=2, others_busy=0.8)).decode == 1


def test_the_cgroup_quota_caps_the_cores_whatever_the_affinity_says() -> None:
    p = plan(Cores(affinity=16, quota=2.5))
    assert p.usable == 2 and p.decode == 2 and p.torch == 2
    assert "cgroup quota 2.5 cores" in p.reasons
    assert plan(Cores(affinity=16, quota=0.5)).usable == 1  # less than a core is still one thread


def test_smt_decodes_one_thread_per_physical_core_and_evaluates_prompts_on_every_cpu() -> None:
    p = plan(Cores(affinity=8, logical_per_core=2))
    assert (p.decode, p.batch, p.torch) == (4, 8, 4)
    busy = plan(Cores(affinity=8, logical_per_core=2, others_busy=4.0))
    assert (busy.free, busy.decode, busy.batch) == (4, 2, 4)


def test_the_configured_n_threads_wins_for_decoding() -> None:
    p = plan(Cores(affinity=2, others_busy=2.0), configured=2)
    assert p.decode == 2 and p.batch == 2
    assert "n_threads set in the config" in p.reasons


def test_a_core_kept_for_the_display_comes_off_decoding_only() -> None:
    two = plan(Cores(affinity=2), kept=1)
    assert (two.decode, two.batch) == (1, 2)  # prompts evaluate while the display is idle
    assert "1 core kept for the app's display" in two.reasons
    assert plan(Cores(affinity=8), kept=1).decode == 7
    assert plan(Cores(affinity=8, logical_per_core=2), kept=1).decode == 3  # a whole physical core
    assert plan(Cores(affinity=1), kept=1).decode == 1  # never none
    assert plan(Cores(affinity=2, others_busy=1.0), kept=1).decode == 1
    assert plan(Cores(affinity=2), configured=2, kept=1).decode == 2  # n_threads set still wins


async def test_the_chat_app_keeps_a_core_for_its_display_while_it_runs(settings) -> None:
    from app.tui import AssistantApp
    from engine import Engine

    budget = cpu_budget.process_budget()
    before = budget.kept
    app = AssistantApp(Engine(settings))
    async with app.run_test():
        assert budget.kept == before + 1
        assert "1 core kept for the app's display" in budget.plan().reasons
    assert budget.kept == before


def test_llama_and_torch_together_never_ask_for_more_threads_than_free_cores() -> None:
    for affinity in (1, 2, 4, 8):
        for busy in (0.0, 0.6, 1.0, 2.5, 9.0):
            p = plan(Cores(affinity=affinity, others_busy=busy))
            assert 1 <= p.decode <= p.free <= p.usable
            assert p.torch <= p.free and p.batch <= p.usable


def test_cgroup_v2_quota(tmp_path: Path) -> None:
    (tmp_path / "self").write_text("0::/user.slice/app\n")
    group = tmp_path / "cg" / "user.slice" / "app"
    group.mkdir(parents=True)
    (group / "cpu.max").write_text("150000 100000\n")
    assert cpu_budget.cgroup_quota(tmp_path / "cg", tmp_path / "self") == 1.5
    (group / "cpu.max").write_text("max 100000\n")
    assert cpu_budget.cgroup_quota(tmp_path / "cg", tmp_path / "self") is None


def test_cgroup_v1_quota(tmp_path: Path) -> None:
    (tmp_path / "self").write_text("4:memory:/x\n1:cpu,cpuacct:/docker/abc\n")
    group = tmp_path / "cg" / "cpu" / "docker" / "abc"
    group.mkdir(parents=True)
    (group / "cpu.cfs_quota_us").write_text("200000\n")
    (group / "cpu.cfs_period_us").write_text("100000\n")
    assert cpu_budget.cgroup_quota(tmp_path / "cg", tmp_path / "self") == 2.0
    (group / "cpu.cfs_quota_us").write_text("-1\n")
    assert cpu_budget.cgroup_quota(tmp_path / "cg", tmp_path / "self") is None


def test_no_cgroup_files_means_no_quota(tmp_path: Path) -> None:
    assert cpu_budget.cgroup_quota(tmp_path / "none", tmp_path / "missing") is None


def test_smt_width_from_the_kernel_topology(tmp_path: Path) -> None:
    topology = tmp_path / "cpu0" / "topology"
    topology.mkdir(parents=True)
    (topology / "thread_siblings_list").write_text("0,4\n")
    assert cpu_budget.smt_width({0, 1}, tmp_path) == 2
    (topology / "thread_siblings_list").write_text("0-1\n")
    assert cpu_budget.smt_width({0}, tmp_path) == 2
    assert cpu_budget.smt_width({3}, tmp_path) == 1  # nothing said: no SMT assumed


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="Linux /proc")
def test_the_meter_sees_another_process_busy_and_not_its_own_work(tmp_path: Path) -> None:
    import subprocess
    import sys

    cpus = cpu_budget.affinity()
    meter = CpuMeter(cpus)
    end = time.monotonic() + 0.6
    while time.monotonic() < end:  # our own busy loop is not "others"
        pass
    own = meter.others_busy(min_interval=0.1)
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.2)
        meter.others_busy(min_interval=0.0)
        time.sleep(0.8)
        other = meter.others_busy(min_interval=0.1)
    finally:
        spinner.kill()
        spinner.wait()
    # The spinner keeps about a core busy: seen, unless the machine was full already.
    assert other >= min(own + 0.5, len(cpus) - 0.3), (own, other)


def test_the_engine_leaves_libgomps_wait_policy_alone() -> None:
    """PASSIVE decoded at 0.30x on an idle machine (bench_contention.py sweep): never set."""
    import subprocess
    import sys

    code = ("import os, engine, engine.backends.local, engine.knowledge; "
            "print([n for n in ('OMP_WAIT_POLICY', 'GOMP_SPINCOUNT') if n in os.environ])")
    env = {k: v for k, v in os.environ.items() if k not in cpu_budget.WAIT_ENV_NAMES}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "[]"


def test_background_work_waits_while_an_answer_streams_and_goes_on_after() -> None:
    foreground = Foreground()
    waited: list[float] = []
    with foreground.answering():
        assert foreground.busy
        worker = threading.Thread(target=lambda: waited.append(foreground.wait()))
        worker.start()
        time.sleep(0.3)
        assert worker.is_alive()  # still waiting: the answer is streaming
    worker.join(2)
    assert not worker.is_alive() and 0.25 <= waited[0] < 2
    assert foreground.wait() < 0.05  # nothing streams: no wait at all


def test_a_long_answer_pauses_background_work_only_up_to_the_limit() -> None:
    foreground = Foreground()
    with foreground.answering():
        assert 0.15 <= foreground.wait(timeout=0.2) < 1


@pytest.mark.skipif(not hasattr(os, "setpriority"), reason="POSIX priorities")
def test_background_work_runs_in_its_own_thread_at_a_lower_priority_and_reports_back() -> None:
    seen: dict[str, int] = {}

    def work() -> str:
        seen["nice"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        seen["tid"] = threading.get_native_id()
        return "done"

    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert cpu_budget.in_background_thread(work) == "done"
    assert seen["nice"] >= max(mine, cpu_budget.BACKGROUND_NICE)
    assert seen["tid"] != threading.get_native_id()
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == mine  # ours untouched

    def fails() -> None:
        raise ValueError("bad folder")

    with pytest.raises(ValueError, match="bad folder"):
        cpu_budget.in_background_thread(fails)


# the real indexer beside the real model ---------------------------------------------------------

async def test_indexing_pauses_while_an_answer_streams_and_finishes_after(settings, tmp_path: Path) -> None:
    """The TUI's case: a folder is indexed in this process while the user asks. No embedding
    batch starts while the answer streams (one already running may finish), the indexing thread
    runs at background priority, and the index is complete afterwards."""
    import asyncio
    import contextlib
    import subprocess
    import sys

    from engine import Engine, Finished, Token
    from memory.indexer import PACE_CHUNKS

    folder = tmp_path / "notes"
    bench = Path(__file__).resolve().parent.parent / "bench" / "make_corpus.py"
    subprocess.run([sys.executable, str(bench), str(folder), "--files", "120"], check=True,
                   capture_output=True)
    engine = Engine(settings.replace(max_tokens=64, cache=False))
    try:
        knowledge = await engine.knowledge()
        embed = knowledge.embedder.embed
        calls: list[tuple[float, int, int]] = []  # the indexer's: (started, chunks, its thread's nice)

        def recorded(texts: list[str], threads: int | None = None, job: int | None = None) -> list[list[float]]:
            if threading.current_thread().name == "indexing":  # not the question's own embedding
                calls.append((time.monotonic(), len(texts),
                              os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))
            return embed(texts, threads=threads, job=job)

        knowledge.embedder.embed = recorded  # type: ignore[method-assign]
        await engine.load_model()
        indexing = asyncio.ensure_future(asyncio.to_thread(knowledge.index, folder))
        deadline = time.monotonic() + 120
        while not calls and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert calls, "indexing never started embedding"
        first_token = last_token = None
        finished = False
        async with contextlib.aclosing(engine.ask("Write a short poem about autumn leaves.")) as events:
            async for event in events:
                if isinstance(event, Token):
                    last_token = time.monotonic()
                    first_token = first_token or last_token
                finished |= isinstance(event, Finished)
        assert finished and first_token is not None and last_token is not None
        assert not indexing.done(), "the folder was indexed before the answer ended: use more files"
        summary = await asyncio.wait_for(indexing, 300)
    finally:
        await engine.close()
    during = [c for c in calls if first_token <= c[0] <= last_token]
    assert during == [], f"{len(during)} embedding batches started while the answer streamed"
    after = [c for c in calls if c[0] > last_token]
    assert after, "indexing did not resume after the answer"
    assert all(chunks <= PACE_CHUNKS for _, chunks, _ in calls)  # small steps: quick to yield
    assert min(nice for _, _, nice in calls) >= cpu_budget.BACKGROUND_NICE
    assert summary.indexed == summary.files == 120 and summary.chunks_added > 2 * PACE_CHUNKS


# assistant doctor ---------------------------------------------------------------------------------

def test_doctor_shows_the_thread_plan_and_the_wait_policy() -> None:
    from engine.doctor import plan_checks

    cores = Cores(affinity=4, quota=2.0)
    checks = {c.name: c for c in plan_checks(cores, plan(cores), {})}
    assert checks["cores"].value == "2 usable (4 CPUs this process may use, cgroup quota 2 cores)"
    assert checks["thread plan"].value.startswith("llama.cpp 2 decode / 2 prompt threads, torch 2")
    assert "libgomp's default" in checks["waiting threads"].value
    assert not any(c.warn or not c.ok for c in checks.values())
    passive = {c.name: c for c in plan_checks(cores, plan(cores), {"OMP_WAIT_POLICY": "passive"})}
    assert passive["waiting threads"].warn and "unset it" in passive["waiting threads"].hint
    assert "OMP_WAIT_POLICY=passive (set in your environment)" == passive["waiting threads"].value


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="Linux /proc")
def test_doctor_warns_when_other_programs_keep_every_core_busy() -> None:
    import subprocess
    import sys

    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                for _ in range(len(cpu_budget.affinity()) + 1)]
    try:
        time.sleep(0.3)
        done = subprocess.run([sys.executable, "-m", "app", "doctor"], capture_output=True, text=True,
                              timeout=120)
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
    lines = [line for line in done.stdout.splitlines() if "busy elsewhere" in line]
    assert lines and "WARN" in lines[0], done.stdout
    assert "oversubscribed" in done.stdout
    assert "thread plan" in done.stdout and "llama.cpp 1 decode" in done.stdout
    assert done.returncode == 0, done.stdout  # slower, not broken: a warning does not fail the doctor
