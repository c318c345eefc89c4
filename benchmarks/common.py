"""What every benchmark shares: the machine it ran on, peak memory, the shared data."""

from __future__ import annotations

import os
import platform
import resource
from pathlib import Path


def machine() -> str:
    """One line naming the machine: CPU model, cores, memory, torch threads."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {mem_gib:.0f} GiB, Python {platform.python_version()}"


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def shared_data() -> Path:
    """The real competition data beside the repository (``../shared/data``), or $COMP_SHARED_DATA."""
    root = Path(os.environ.get("COMP_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
    if not root.is_dir():
        raise SystemExit(f"benchmarks need the shared data at {root} (set COMP_SHARED_DATA)")
    return root


def md_table(header: list[str], rows: list[list]) -> str:
    """A markdown table.

    >>> print(md_table(["a", "b"], [[1, 2.5]]))
    | a | b |
    |---|---|
    | 1 | 2.5 |
    """
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def example_workspace(folder: Path):
    """An example workspace of the repository and its data, its folds written when it has none yet."""
    from competition.data import load
    from competition.spec import load_spec
    from competition.workspace import Workspace

    ws = Workspace(folder)
    data = load(load_spec(ws.spec_file))
    if not ws.folds_file.is_file():
        from competition.folds import write_folds
        write_folds(ws, data)
    return ws, data


def train_runs(ws, data, names, label: str) -> dict[str, float]:
    """Train (or resume) the experiments ``names`` of ``ws``: the seconds of each one's folds and of its
    preparation (tokenising; a frozen-layer cache)."""
    import time

    from competition.config import load_config
    from competition.leaderboard import train_seconds
    from competition.runs import load_run
    from competition.train import train

    seconds = {}
    for exp in names:
        started = time.perf_counter()
        train(ws, load_config(ws, exp), data=data)
        seconds[exp] = round(train_seconds(load_run(ws, exp).manifest), 1)
        print(f"[bench] {label} {exp}: {seconds[exp]}s in its folds ({time.perf_counter() - started:.0f}s now)",
              flush=True)
    return seconds
