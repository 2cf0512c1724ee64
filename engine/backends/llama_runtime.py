"""llama.cpp in this process: importing llama-cpp-python with its log routed into ours, and what
the installed build can do (GPU offload, CPU features), and how many threads suit this machine.

The one place besides the local backend's own modules that asks llama_cpp anything: the load,
`assistant doctor` and `engine.hardware` all come here. Importing this module is cheap; llama_cpp
itself is imported on the first call that needs it.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import threading
from typing import Any


@functools.cache
def import_llama_cpp() -> Any:
    """llama_cpp, with its log routed into ours and process-wide output left alone.

    `Llama(verbose=False)` silences llama.cpp by `dup2`-ing /dev/null over the process's fds 1
    and 2 while a model loads: whatever another thread writes meanwhile (the CLI's answer, every
    repaint of the TUI) is lost. llama.cpp's messages reach us through `llama_log_set` instead,
    so that redirection is switched off; `verbose` then only stops llama-cpp-python's prints."""
    import llama_cpp
    from llama_cpp import _utils

    def never_redirect(self: Any, disable: bool = True) -> None:
        self.disable = True  # the context manager's own switch for "do nothing"

    _utils.suppress_stdout_stderr.__init__ = never_redirect  # type: ignore[method-assign]
    llama_cpp.llama_log_set(_log_callback(llama_cpp), ctypes.c_void_p(0))
    return llama_cpp


def gpu_offload_supported() -> bool:
    """Whether this llama-cpp-python build can offload layers to a GPU: the one place llama_cpp
    is asked (the load, `assistant doctor`, `engine.hardware`)."""
    return bool(import_llama_cpp().llama_supports_gpu_offload())


def system_info() -> str:
    """llama.cpp's own list of the CPU and GPU features this build uses (`assistant doctor`)."""
    return import_llama_cpp().llama_print_system_info().decode(errors="replace").strip(" |")


# ggml_log_level (ggml.h): 1 debug, 2 info, 3 warn, 4 error, 5 continues the previous message.
# llama.cpp's info is chatter (every metadata key of the file): our debug.
_LEVELS = {1: logging.DEBUG, 2: logging.DEBUG, 3: logging.WARNING, 4: logging.ERROR}
llama_log = logging.getLogger("llama.cpp")


@functools.cache  # one callback for the process: ctypes must keep it alive while llama.cpp holds it
def _log_callback(llama_cpp: Any) -> Any:
    pending: list[str] = []  # llama.cpp writes a line in pieces; one log record per line
    level = [logging.DEBUG]
    lock = threading.Lock()

    @llama_cpp.llama_log_callback
    def callback(ggml_level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        with lock:
            if ggml_level != 5:
                level[0] = _LEVELS.get(ggml_level, logging.DEBUG)
            pending.append(text.decode("utf-8", errors="replace"))
            if pending[-1].endswith("\n"):
                line = "".join(pending).rstrip()
                pending.clear()
                if line:
                    llama_log.log(level[0], "%s", line)

    return callback


def default_threads() -> int:
    """Decoding is memory-bound: one thread per physical core is fastest. Up to 4 logical CPUs
    are usually all physical; beyond that, assume two hardware threads per core."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return available if available <= 4 else available // 2
