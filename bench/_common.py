"""Shared helpers for the benchmarks under ``bench/`` (not a benchmark itself).

Benchmarks live by package area (``bench/lib/``, ``bench/train/``); ``nox -s bench`` runs every
``bench/**/*.py`` whose name does not start with ``_``. Each benchmark puts ``bench/`` on
``sys.path`` and imports this module as ``import _common``.

Conventions: every benchmark prints its headline numbers as ``name: value`` lines (one each,
nothing else on the line), exits non-zero only on errors (a missed target is a printed note),
and keeps its runtime to a few minutes on a shared 2-core machine, so timings are noisy:
medians of a few repetitions after a warm-up.
"""

from __future__ import annotations

import contextlib
import importlib
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any


def headline(name: str, value: float | int | str, fmt: str = ".4g") -> None:
    """Print one headline as ``name: value``."""
    text = format(value, fmt) if isinstance(value, float) else str(value)
    print(f"{name}: {text}", flush=True)


def note(text: str) -> None:
    """Print an informational line (never in the ``name: value`` headline form)."""
    print(f"# {text}", flush=True)


def import_when_ready(module: str, timeout: float = 1200.0, interval: float = 60.0) -> Any:
    """Import ``module``, retrying every ``interval`` s for up to ``timeout`` s.

    For modules that colleagues may still be writing while a benchmark is developed; in a
    finished tree the first attempt succeeds.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            return importlib.import_module(module)
        except ImportError as exc:
            if time.monotonic() + interval > deadline:
                raise
            print(
                f"# {module} not importable yet ({exc}); retrying in {interval:.0f} s",
                file=sys.stderr,
                flush=True,
            )
            time.sleep(interval)
            for name in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
                del sys.modules[name]


def time_calls(
    fn: Callable[[], Any],
    repeats: int = 5,
    warmup: int = 1,
    sync: Callable[[], None] | None = None,
) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones.

    ``sync`` (e.g. ``torch.cuda.synchronize``) is called before each clock read.
    """
    sync = sync or (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return times


def median(times: list[float]) -> float:
    return statistics.median(times)


@contextlib.contextmanager
def stopwatch(label: str) -> Iterator[None]:
    """Print how long a (setup) block took, as a note."""
    start = time.perf_counter()
    yield
    note(f"{label}: {time.perf_counter() - start:.1f} s")


def tree_rss(pid: int, anonymous: bool = False) -> int:
    """Bytes resident in ``pid`` and all its descendants (from /proc); ``anonymous``: only the
    anonymous memory (``RssAnon``: heap and buffers, not the shared libraries mapped from disk)."""
    import os

    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    total, todo, page = 0, [pid], os.sysconf("SC_PAGE_SIZE")
    while todo:
        p = todo.pop()
        try:
            if anonymous:
                with open(f"/proc/{p}/status") as f:
                    line = next(x for x in f if x.startswith("RssAnon:"))
                total += int(line.split()[1]) * 1024
            else:
                with open(f"/proc/{p}/statm") as f:
                    total += int(f.read().split()[1]) * page
        except (OSError, IndexError, ValueError, StopIteration):
            pass
        todo += children.get(p, [])
    return total


def run_watched(cmd: list[str], env: dict | None = None, interval: float = 0.05):
    """Run ``cmd``; ``(returncode, stdout, stderr, wall seconds, peak RSS of its process tree
    in bytes, peak anonymous RSS of the tree)``, the tree (the command and every descendant,
    summed) sampled every ``interval`` s from /proc."""
    import subprocess
    import threading

    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    peak = [0, 0]

    def watch():
        while proc.poll() is None:
            peak[0] = max(peak[0], tree_rss(proc.pid))
            peak[1] = max(peak[1], tree_rss(proc.pid, anonymous=True))
            time.sleep(interval)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    out, err = proc.communicate()
    watcher.join()
    return proc.returncode, out, err, time.perf_counter() - start, peak[0], peak[1]


def drop_from_page_cache(paths) -> int:
    """Ask the kernel to drop the cached pages of ``paths`` (``POSIX_FADV_DONTNEED``: no root
    needed, other processes' files untouched), so the next read comes from disk; the bytes
    asked for."""
    import os

    total = 0
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fdatasync(fd)  # dirty pages are not dropped
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            total += os.fstat(fd).st_size
        finally:
            os.close(fd)
    return total


if __name__ == "__main__":  # not a benchmark: nothing to measure here
    pass
