"""Measuring a training step from outside: phase timers, temporary method patches, vision-tower probes, memory.

Nothing here changes what a trainer computes. :class:`PhaseTimer` charges wall time to named phases with
*exclusive* accounting (a timed call nested in another timed call is charged to its own phase and subtracted
from its parent's), so the phases of a step never add up to more than the step. :class:`Patcher` swaps an
attribute (a bound method of one instance, a module global, the ``__call__`` of one object) for a timed wrapper
and restores it on exit. :class:`VisionProbe` hooks vision towers and counts what they encode (an overlay:
its time is also inside whichever phase ran the tower); :class:`TokenProbe` counts the tokens the language model
computes in each phase.

>>> timer = PhaseTimer()
>>> with timer.phase("outer"):
...     with timer.phase("inner"):
...         pass
>>> sorted(timer.take())
['inner', 'outer']
>>> timer.take()
{}
"""

from __future__ import annotations

import functools
import os
import platform
import re
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any


class PhaseTimer:
    """Exclusive wall time per phase, accumulated until :meth:`take`. ``sync`` runs at every boundary
    (``torch.cuda.synchronize`` on a GPU, so asynchronous kernels are charged to the phase that launched them)."""

    def __init__(self, sync: Callable[[], None] | None = None) -> None:
        self.sync = sync or (lambda: None)
        self.totals: dict[str, float] = defaultdict(float)
        self._stack: list[list[Any]] = []  # [name, start, time of timed children]

    def start(self, name: str) -> None:
        self.sync()
        self._stack.append([name, time.perf_counter(), 0.0])

    def stop(self) -> float:
        """End the innermost phase; returns its inclusive duration."""
        self.sync()
        name, t0, children = self._stack.pop()
        dt = time.perf_counter() - t0
        self.totals[name] += dt - children
        if self._stack:
            self._stack[-1][2] += dt
        return dt

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self.start(name)
        try:
            yield
        finally:
            self.stop()

    def wrap(self, fn: Callable[..., Any], name: str | Callable[..., str]) -> Callable[..., Any]:
        """``fn`` timed under ``name``, or under ``name(*args, **kwargs)`` when ``name`` is callable."""

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            with self.phase(name(*args, **kwargs) if callable(name) else name):
                return fn(*args, **kwargs)

        return timed

    def take(self) -> dict[str, float]:
        """The phases accumulated since the last call (seconds), then reset."""
        out = dict(self.totals)
        self.totals.clear()
        return out

    @property
    def current(self) -> str | None:
        """The innermost running phase (None outside every phase)."""
        return self._stack[-1][0] if self._stack else None


class Patcher:
    """Temporarily replace attributes; every replacement is undone (in reverse order) on :meth:`restore`."""

    def __init__(self) -> None:
        self._undo: list[Callable[[], None]] = []

    def setattr(self, obj: Any, name: str, value: Any) -> None:
        had_own = name in getattr(obj, "__dict__", {})
        old = obj.__dict__[name] if had_own else None

        def undo() -> None:
            if had_own:
                setattr(obj, name, old)
            else:
                delattr(obj, name)

        setattr(obj, name, value)
        self._undo.append(undo)

    def wrap(self, obj: Any, name: str, timer: PhaseTimer, phase: str | Callable[..., str]) -> None:
        """Replace ``obj.name`` (a method or module function) by a timed version of itself."""
        self.setattr(obj, name, timer.wrap(getattr(obj, name), phase))

    def wrap_call(self, obj: Any, timer: PhaseTimer, phase: str,
                  after: Callable[[Any], None] | None = None) -> None:
        """Time ``obj(...)`` calls of this one object (its class is swapped for a subclass whose ``__call__``
        is timed, so ``isinstance`` still holds); ``after(result)`` sees each result."""
        cls = type(obj)

        def __call__(self: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N807
            with timer.phase(phase):
                out = cls.__call__(self, *args, **kwargs)
            if after is not None:
                after(out)
            return out

        obj.__class__ = type(cls.__name__, (cls,), {"__call__": __call__, "__module__": cls.__module__})

        def undo() -> None:
            obj.__class__ = cls

        self._undo.append(undo)

    def restore(self) -> None:
        while self._undo:
            self._undo.pop()()


class VisionProbe:
    """Counts and times the forwards of one or more vision towers.

    ``calls``: tower forwards; ``inputs``: videos or images encoded (rows of ``grid_thw``); ``patches``: patches
    encoded (sum of ``t*h*w`` of the grids); ``seconds``: time inside the towers.
    """

    def __init__(self, towers: Sequence[Any], sync: Callable[[], None] | None = None) -> None:
        self.sync = sync or (lambda: None)
        self.calls = self.inputs = self.patches = 0
        self.seconds = 0.0
        self._t0: list[float] = []
        self._handles = []
        for tower in towers:
            self._handles.append(tower.register_forward_pre_hook(self._pre))
            self._handles.append(tower.register_forward_hook(self._post, with_kwargs=True))

    def _pre(self, module: Any, args: tuple) -> None:
        self.sync()
        self._t0.append(time.perf_counter())

    def _post(self, module: Any, args: tuple, kwargs: dict, output: Any) -> None:
        self.sync()
        self.seconds += time.perf_counter() - self._t0.pop()
        grid = kwargs.get("grid_thw", args[1] if len(args) > 1 else None)
        self.calls += 1
        if grid is not None:
            self.inputs += int(grid.shape[0])
            self.patches += int(grid.prod(-1).sum())

    def take(self) -> dict[str, float]:
        out = {"calls": self.calls, "inputs": self.inputs, "patches": self.patches, "seconds": self.seconds}
        self.calls = self.inputs = self.patches = 0
        self.seconds = 0.0
        return out

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


class TokenProbe:
    """Tokens the language model computes, per phase: a forward pre-hook on each decoder (the text model under the
    vision-language model) adds the ``rows x length`` of every call's input to the phase running then (``other``
    outside every phase). A generation's prefill and each of its decoding steps are calls; a recomputation under
    gradient checkpointing is not (it reruns layers, not the decoder's forward).
    """

    def __init__(self, decoders: Sequence[Any], timer: PhaseTimer) -> None:
        self.timer = timer
        self.tokens: dict[str, int] = defaultdict(int)
        self._handles = [d.register_forward_pre_hook(self._pre, with_kwargs=True) for d in decoders]

    def _pre(self, module: Any, args: tuple, kwargs: dict) -> None:
        x = kwargs.get("inputs_embeds")
        if x is None:
            x = kwargs.get("input_ids", args[0] if args else None)
        if x is not None:
            self.tokens[self.timer.current or "other"] += int(x.shape[0]) * int(x.shape[1])

    def take(self) -> dict[str, int]:
        out = dict(self.tokens)
        self.tokens.clear()
        return out

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


# ------------------------------------------------------------------------------------------------- memory


def _status_kb(field_name: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class MemoryMeter:
    """Peak memory of a span of code: resident set size on CPU (Linux ``VmHWM``, reset through
    ``/proc/self/clear_refs``; elsewhere the process-lifetime ``ru_maxrss``) and allocated memory on a GPU."""

    def __init__(self, cuda: bool = False) -> None:
        self.cuda = cuda
        self.resettable = self._reset_hwm()
        self._start_rss = 0.0

    @staticmethod
    def _reset_hwm() -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            return True
        except OSError:
            return False

    @staticmethod
    def rss_mb() -> float:
        kb = _status_kb("VmRSS")
        return kb / 1024 if kb is not None else float("nan")

    def start(self) -> None:
        if self.resettable:
            self._reset_hwm()
        self._start_rss = self.rss_mb()
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats()

    def stop(self) -> dict[str, float]:
        """``peak_rss_mb`` (peak since :meth:`start`, or since the process began when not resettable),
        ``rss_growth_mb`` (that peak minus the RSS at start) and, on a GPU, ``peak_gpu_allocated_mb``."""
        kb = _status_kb("VmHWM")
        if kb is None or not self.resettable:
            import resource

            kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        out = {"peak_rss_mb": kb / 1024, "rss_growth_mb": kb / 1024 - self._start_rss}
        if self.cuda:
            import torch

            out["peak_gpu_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
        return out


# ------------------------------------------------------------------------------------------------- machine


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """CPU model and cores, load average, torch threads, GPU, Python and library versions."""
    import torch
    import transformers

    try:
        import trl

        trl_version = trl.__version__
    except ImportError:
        trl_version = None
    info: dict[str, Any] = {
        "cpu": cpu_model(), "cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "load_average": [round(x, 2) for x in os.getloadavg()], "platform": platform.platform(),
        "python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
        "trl": trl_version, "gpu": None,
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = {"name": props.name, "memory_gb": round(props.total_memory / 2**30, 1),
                       "count": torch.cuda.device_count(), "cuda": torch.version.cuda}
    return info


#: Dense bf16 peak TFLOP/s by GPU name (NVIDIA data sheets, SXM parts), for model FLOPs utilisation.
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}


def peak_tflops(gpu_name: str | None) -> float | None:
    """The table's peak for the first name found in ``gpu_name``.

    >>> peak_tflops("NVIDIA H100 80GB HBM3"), peak_tflops("cpu") is None
    (989.0, True)
    """
    if not gpu_name:
        return None
    for key, value in PEAK_BF16_TFLOPS.items():
        if re.search(rf"\b{key}\b", gpu_name):
            return value
    return None


def median(values: Sequence[float]) -> float:
    """Median, NaN for no values.

    >>> median([3.0, 1.0, 2.0]), median([])
    (2.0, nan)
    """
    return float(statistics.median(values)) if values else float("nan")
