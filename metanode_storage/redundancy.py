"""How a node protects each chunk against lost providers: full replicas or erasure coding.

``replicas:N`` keeps N full copies on N distinct providers: it survives N-1 lost
providers at N times the stored bytes. ``ec:K+M`` splits each chunk into K data and
M parity fragments (Reed-Solomon, engine/erasure.py) on K+M distinct providers: any
K of them rebuild the chunk, so it survives M lost providers at (K+M)/K times the
stored bytes (``ec:3+2``: two losses at 1.67x, where three replicas pay 3x).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from metanode_storage.errors import InvalidSetting

MAX_REPLICAS = 5  # the seed's "at most 5 providers" for full copies
MAX_FRAGMENTS = 10  # one fragment per provider, and the catalogue has ten vendors
_TEXT = re.compile(r"(?:replicas:(\d+)|ec:(\d+)\+(\d+))")


@dataclass(frozen=True)
class Redundancy:
    """``needed`` pieces of ``pieces`` rebuild a chunk; ``needed`` 1 means full replicas."""

    pieces: int
    needed: int = 1

    @classmethod
    def replicas(cls, count: int) -> Redundancy:
        return cls(count, 1)

    @classmethod
    def erasure(cls, data: int, parity: int) -> Redundancy:
        return cls(data + parity, data)

    @classmethod
    def parse(cls, text: str) -> Redundancy:
        """``replicas:N`` or ``ec:K+M``, checked; anything else is an ``InvalidSetting``."""
        match = _TEXT.fullmatch(text.strip().lower())
        if match is None:
            raise InvalidSetting(
                f"redundancy {text!r} is not understood",
                "use replicas:N (for example replicas:3) or ec:K+M (for example ec:3+2)",
            )
        count, data, parity = match.groups()
        if data is not None and int(data) < 2:  # ec:1+M is M+1 replicas; ec:0+M was read as 1
            raise InvalidSetting(
                f"erasure code {text.strip()} is out of range",
                f"use K >= 2 data and M >= 1 parity fragments, K+M at most {MAX_FRAGMENTS}, "
                "or replicas:N",
            )
        chosen = cls.replicas(int(count)) if count else cls.erasure(int(data), int(parity))
        chosen.validate()
        return chosen

    @property
    def is_erasure_coded(self) -> bool:
        return self.needed > 1

    @property
    def parity(self) -> int:
        return self.pieces - self.needed

    @property
    def tolerates(self) -> int:
        """Provider losses a fully stored chunk survives."""
        return self.pieces - self.needed

    @property
    def overhead(self) -> float:
        """Stored bytes per byte of (compressed) chunk, before padding and seals."""
        return self.pieces / self.needed

    def text(self) -> str:
        if self.is_erasure_coded:
            return f"ec:{self.needed}+{self.parity}"
        return f"replicas:{self.pieces}"

    def validate(self) -> None:
        if self.is_erasure_coded:
            if self.parity < 1 or self.pieces > MAX_FRAGMENTS:
                raise InvalidSetting(
                    f"erasure code {self.text()} is out of range",
                    f"use K >= 2 data and M >= 1 parity fragments, K+M at most {MAX_FRAGMENTS}",
                )
        elif not 1 <= self.pieces <= MAX_REPLICAS:
            raise InvalidSetting(
                f"{self.pieces} replicas is out of range", f"use 1 to {MAX_REPLICAS}"
            )
