"""Resident-set size of this process from /proc (Linux), shared by the benchmarks.

``rss_tools()`` gives (reset the high-water mark, read the high-water mark, read the current RSS), in
bytes, or None where /proc/self/clear_refs or /proc/self/status is missing or not writable.
"""

from __future__ import annotations

from pathlib import Path


def rss_tools():
    clear, status = Path("/proc/self/clear_refs"), Path("/proc/self/status")
    if not (clear.exists() and status.exists()):
        return None

    def field(name):
        for line in status.read_text().splitlines():
            if line.startswith(name):
                return int(line.split()[1]) * 1024
        return None

    def reset():
        try:
            clear.write_text("5")   # 5: reset the peak RSS (proc(5), clear_refs)
            return True
        except OSError:
            return False

    if not reset() or field("VmHWM:") is None:
        return None
    return reset, lambda: field("VmHWM:"), lambda: field("VmRSS:")
