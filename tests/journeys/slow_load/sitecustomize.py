"""Makes llama.cpp slow to load the model files named, for the journeys that watch a load.

The 135M test model loads in about 0.3 s, too fast to see what happens to the screen during a
load. With this folder on PYTHONPATH and ASSISTANT_TEST_SLOW_LOAD="NAME:SECONDS[,NAME:SECONDS...]",
loading a model file whose path contains NAME waits SECONDS first, inside llama-cpp-python's load call: exactly
where `Llama(verbose=False)` used to point the process's stdout and stderr at /dev/null. The wait
is put at `llama_cpp.llama_cpp.llama_model_load_from_file`, the one C call that loads weights,
as soon as that module is imported; nothing else changes.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
import time

_SPEC = os.environ.get("ASSISTANT_TEST_SLOW_LOAD", "")
_TARGET = "llama_cpp.llama_cpp"


def _slowed(load):  # noqa: ANN001, ANN202 - a ctypes function
    waits = [(name.encode(), float(seconds)) for name, _, seconds in
             (item.rpartition(":") for item in _SPEC.split(",")) if name]

    def load_model_from_file(path: bytes, params):  # noqa: ANN001, ANN202
        time.sleep(next((seconds for name, seconds in waits if name in path), 0.0))
        return load(path, params)

    return load_model_from_file


class _Loader(importlib.abc.Loader):
    def __init__(self, inner: importlib.abc.Loader) -> None:
        self.inner = inner

    def create_module(self, spec):  # noqa: ANN001, ANN201
        return self.inner.create_module(spec)

    def exec_module(self, module) -> None:  # noqa: ANN001
        self.inner.exec_module(module)
        module.llama_model_load_from_file = _slowed(module.llama_model_load_from_file)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):  # noqa: ANN001, ANN201
        if fullname != _TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader)
        return spec


if _SPEC:
    sys.meta_path.insert(0, _Finder())
