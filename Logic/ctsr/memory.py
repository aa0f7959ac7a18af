"""How much memory is free, in bytes, and how to say it."""

from __future__ import annotations

import os
from pathlib import Path


def available_ram_bytes() -> int:
    """RAM this process may still use: the kernel's MemAvailable, capped by a cgroup limit."""
    available = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except OSError:
        pass
    if available is None:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 8 << 30
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text())
        if limit != "max":
            available = min(available, int(limit) - used)
    except (OSError, ValueError):
        pass
    return max(0, available)


def available_vram_bytes(device) -> int:
    """Free memory on a CUDA device (0 for the CPU)."""
    import torch

    if torch.device(device).type != "cuda":
        return 0
    free, _ = torch.cuda.mem_get_info(torch.device(device))
    return int(free)


def format_bytes(n: float) -> str:
    """1.5e9 -> "1.4 GiB"."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    raise AssertionError
