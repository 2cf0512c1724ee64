"""What this machine offers a model: GPUs and their free memory, RAM, and whether the installed
llama.cpp can use the GPU at all; and, when it cannot, the exact command that rebuilds it.

Only what the platform tells is reported: `nvidia-smi` for NVIDIA, the amdgpu driver's sysfs
files for AMD, unified memory on Apple silicon. Anything else is None (unknown), never a guess.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from engine.backends.llama_runtime import gpu_offload_supported  # asks llama.cpp; cheap to import
from engine.fit import Hardware

MiB = 1 << 20
# PCI vendor ids, as in /sys/class/drm/card*/device/vendor
_VENDORS = {"0x10de": "nvidia", "0x1002": "amd", "0x8086": "intel"}
# The llama.cpp backend to build for each GPU maker, and its CMake flag.
GPU_BUILDS = {
    "nvidia": ("CUDA", "-DGGML_CUDA=on"),
    "apple": ("Metal", "-DGGML_METAL=on"),
    "amd": ("Vulkan", "-DGGML_VULKAN=on"),
    "intel": ("Vulkan", "-DGGML_VULKAN=on"),
}
# What each build needs installed first, and the program that shows it is there.
BUILD_NEEDS = {
    "CUDA": ("nvcc", "the CUDA toolkit (nvcc)"),
    "Vulkan": ("glslc", "the Vulkan SDK (glslc)"),
    "Metal": ("xcrun", "the Xcode command line tools"),
}


@dataclass(frozen=True)
class GPU:
    vendor: str  # nvidia, amd, intel, apple
    name: str
    vram_total: int | None = None
    vram_free: int | None = None

    @property
    def discrete(self) -> bool:
        """A GPU worth offloading to: integrated Intel graphics rarely beat the CPU."""
        return self.vendor != "intel"


Runner = Callable[..., subprocess.CompletedProcess[str]]


def nvidia_gpus(run: Runner = subprocess.run) -> list[GPU]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = run([exe, "--query-gpu=name,memory.total,memory.free", "--format=csv,noheader,nounits"],
                  capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []  # a driver mismatch makes nvidia-smi fail; the GPU is then unusable anyway
    return parse_nvidia_smi(out)


def parse_nvidia_smi(out: str) -> list[GPU]:
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 3:
            continue
        total, free = (int(p) * MiB if p.isdigit() else None for p in parts[1:])
        gpus.append(GPU("nvidia", parts[0], total, free))
    return gpus


def sysfs_gpus(root: Path = Path("/sys/class/drm")) -> list[GPU]:
    """GPUs the Linux kernel lists, with VRAM where the driver exports it (amdgpu does)."""
    gpus = []
    for card in sorted(root.glob("card[0-9]*")):
        if "-" in card.name:  # card0-HDMI-A-1: a connector, not a GPU
            continue
        device = card / "device"
        try:
            vendor = _VENDORS.get((device / "vendor").read_text().strip())
        except OSError:
            continue
        if vendor is None:
            continue
        total = _read_int(device / "mem_info_vram_total")
        used = _read_int(device / "mem_info_vram_used")
        free = total - used if total is not None and used is not None else None
        gpus.append(GPU(vendor, f"{vendor} GPU ({card.name})", total, free))
    return gpus


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def detect_gpus() -> list[GPU]:
    if sys.platform == "darwin":
        return [GPU("apple", platform.machine() + " GPU")] if platform.machine() == "arm64" else []
    found = nvidia_gpus()
    if sys.platform.startswith("linux"):
        # nvidia-smi knows NVIDIA cards better; sysfs adds the others (and an NVIDIA card whose
        # driver tools are missing).
        found += [g for g in sysfs_gpus() if not (g.vendor == "nvidia" and found)]
    return found


def memory() -> tuple[int | None, int | None]:
    """(available, total) RAM in bytes."""
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil is a dependency; /proc covers Linux without it
        return _meminfo()
    vm = psutil.virtual_memory()
    return vm.available, vm.total


def _meminfo(path: Path = Path("/proc/meminfo")) -> tuple[int | None, int | None]:
    values = {}
    try:
        for line in path.read_text().splitlines():
            key, _, rest = line.partition(":")
            values[key] = int(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        return None, None
    return values.get("MemAvailable"), values.get("MemTotal")


def detect(gpu_offload: bool | None = None, gpus: list[GPU] | None = None) -> Hardware:
    offload = gpu_offload_supported() if gpu_offload is None else gpu_offload
    gpus = detect_gpus() if gpus is None else gpus
    available, total = memory()
    usable = [g for g in gpus if g.discrete or g.vendor == "apple"]
    frees = [g.vram_free for g in usable]
    totals = [g.vram_total for g in usable]
    return Hardware(
        gpu_offload=offload,
        # llama.cpp spreads layers over every GPU: their free memory adds up
        vram_free=sum(frees) if frees and None not in frees else None,  # type: ignore[arg-type]
        vram_total=sum(totals) if totals and None not in totals else None,  # type: ignore[arg-type]
        ram_available=available,
        ram_total=total,
        unified_memory=any(g.vendor == "apple" for g in usable),
        gpu_name=", ".join(g.name for g in usable) or None,
    )


# Advice when the GPU is there but the build cannot use it --------------------------------------


@dataclass(frozen=True)
class Install:
    """How this copy of assistant was installed, which decides how to rebuild llama-cpp-python."""

    kind: str  # pipx, uv, frozen, venv
    executable: str
    pipx_venv: str = "assistant"
    windows: bool = False

    @classmethod
    def current(cls) -> Install:
        prefix = Path(sys.prefix)
        windows = os.name == "nt"
        if getattr(sys, "frozen", False):
            return cls("frozen", sys.executable, windows=windows)
        if "pipx" in prefix.parts and prefix.parent.name == "venvs":
            return cls("pipx", sys.executable, prefix.name, windows)
        if prefix.parent.name == "tools" and "uv" in prefix.parts:
            return cls("uv", sys.executable, windows=windows)
        return cls("venv", sys.executable, windows=windows)


def reinstall_command(build: str, install: Install, version: str) -> str:
    """The one command that rebuilds the installed llama-cpp-python with GPU backend `build`
    (CUDA, Metal, Vulkan), keeping its version and leaving every other package alone."""
    flag = next(flag for name, flag in GPU_BUILDS.values() if name == build)
    package = f"llama-cpp-python=={version}"
    if install.kind == "pipx":
        cmd = f"pipx runpip {install.pipx_venv} install --force-reinstall --no-deps --no-cache-dir {package}"
    elif install.kind == "uv":
        cmd = (f"uv pip install --python {_quote(install.executable)} --reinstall-package llama-cpp-python "
               f"--no-deps --no-cache {package}")
    elif install.kind == "frozen":
        cmd = (f"pip install --force-reinstall --no-deps --no-cache-dir {package} && packaging/build.sh  "
               "# in the environment the bundle is built from")
    else:
        cmd = (f"{_quote(install.executable)} -m pip install --force-reinstall --no-deps --no-cache-dir "
               f"{package}")
    env = f'$env:CMAKE_ARGS="{flag}"; ' if install.windows else f'CMAKE_ARGS="{flag}" '
    return env + cmd


def _quote(path: str) -> str:
    return f'"{path}"' if " " in path else path


@dataclass(frozen=True)
class GpuAdvice:
    build: str  # CUDA, Metal, Vulkan
    gpu: str
    command: str
    needs: str | None  # a toolkit to install first, when it is missing
    worth_it: bool  # False for integrated graphics: offloading may not be faster


def gpu_advice(gpus: list[GPU], gpu_offload: bool, install: Install | None = None,
               version: str | None = None) -> GpuAdvice | None:
    """None when there is nothing to do: no GPU, or the build already offloads."""
    if gpu_offload or not gpus:
        return None
    gpu = next((g for g in gpus if g.discrete), gpus[0])
    build = GPU_BUILDS[gpu.vendor][0]
    if version is None:
        try:
            version = metadata.version("llama_cpp_python")
        except metadata.PackageNotFoundError:
            version = "0.3.9"
    command = reinstall_command(build, install or Install.current(), version)
    program, toolkit = BUILD_NEEDS[build]
    return GpuAdvice(build, gpu.name, command, None if shutil.which(program) else toolkit, gpu.discrete)
