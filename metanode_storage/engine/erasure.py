"""Reed-Solomon fragments of a chunk's frame, through pyeclib (liberasurecode + ISA-L).

The code is ISA-L's Cauchy Reed-Solomon: systematic and MDS, so any K of the K+M
fragments rebuild the frame (checked for every K+M up to 10 and every set of K). Each
fragment carries liberasurecode's header (its index, the original length, a checksum);
here it travels inside the fragment's own seal, so a provider sees none of it.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from pyeclib.ec_iface import ECDriver

CODE = "isa_l_rs_cauchy"
_local = threading.local()  # an ECDriver per thread and shape: liberasurecode keeps state


class FragmentsInvalid(Exception):
    """The fragments given do not rebuild a frame (too few, or inconsistent)."""


def _driver(data: int, parity: int) -> ECDriver:
    drivers: dict[tuple[int, int], ECDriver] = _local.__dict__.setdefault("drivers", {})
    shape = (data, parity)
    if shape not in drivers:
        drivers[shape] = ECDriver(k=data, m=parity, ec_type=CODE)
    return drivers[shape]


def encode(frame: bytes, data: int, parity: int) -> list[bytes]:
    """The ``data + parity`` fragments of ``frame``, in index order."""
    return list(_driver(data, parity).encode(frame))


def decode(fragments: Mapping[int, bytes], data: int, parity: int) -> bytes:
    """The frame from at least ``data`` fragments (index -> fragment)."""
    if len(fragments) < data:
        raise FragmentsInvalid(f"{len(fragments)} fragments given, {data} needed")
    try:
        return bytes(_driver(data, parity).decode(list(fragments.values())[:data]))
    except Exception as exc:  # pyeclib raises its own hierarchy, all of it "cannot decode"
        raise FragmentsInvalid(f"the fragments do not decode: {exc}") from None


def fragment_index(fragment: bytes) -> int:
    """The index liberasurecode wrote into a fragment's header (its first 4 bytes)."""
    if len(fragment) < 4:
        raise FragmentsInvalid("a fragment is shorter than its header")
    return int.from_bytes(fragment[:4], "little")
