"""Human-readable sizes, times and percentages for CLI output."""

from __future__ import annotations

import time

from metanode_storage.redundancy import Redundancy


def size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def timestamp(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


def ago(seconds: int) -> str:
    """How long ago a Unix time was, roughly: '5 s ago', '3 h ago', '2 d ago'."""
    delta = max(0, int(time.time()) - seconds)
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if delta >= size:
            return f"{delta // size} {unit} ago"
    return f"{delta} s ago"


def percent(value: float | None) -> str:
    if value is None:
        return "n/a (nothing stored)"
    return f"{value:.0f}%" if value in (0.0, 100.0) else f"{value:.2f}%"


def ratio(value: float | None) -> str:
    return "n/a (nothing stored)" if value is None else f"{value:.2f}x"


def millis(value: float | None) -> str:
    return "n/a (no provider answered)" if value is None else f"{value:.2f}ms"


def redundancy(scheme: Redundancy) -> str:
    """``replicas:3 (3 full copies; survives 2 lost providers)`` and the like."""
    if scheme.is_erasure_coded:
        what = (
            f"{scheme.needed} data + {scheme.parity} parity fragments, "
            f"{scheme.overhead:.2f}x the bytes"
        )
    else:
        what = f"{scheme.pieces} full cop{'y' if scheme.pieces == 1 else 'ies'}"
    losses = scheme.tolerates
    return f"{scheme.text()} ({what}; survives {losses} lost provider{'' if losses == 1 else 's'})"
