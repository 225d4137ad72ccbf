"""Human-readable sizes, times and percentages for CLI output."""

from __future__ import annotations

import time


def size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def timestamp(seconds: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


def percent(value: float | None) -> str:
    if value is None:
        return "n/a (nothing stored)"
    return f"{value:.0f}%" if value in (0.0, 100.0) else f"{value:.2f}%"


def millis(value: float | None) -> str:
    return "n/a (no provider answered)" if value is None else f"{value:.2f}ms"
