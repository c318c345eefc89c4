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
