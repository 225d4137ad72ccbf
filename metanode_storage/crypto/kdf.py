"""Passphrase to key: Argon2id (RFC 9106), with its parameters kept beside the output."""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

SALT_SIZE = 16
# Bounds on what a keystore header may ask for: RFC 9106's minimum of 8 KiB per lane,
# and at most 4 GiB and 64 passes, so a damaged header cannot exhaust the machine.
_MAX_ITERATIONS = 64
_MAX_LANES = 64
_MAX_MEMORY_KIB = 4 * 1024 * 1024


@dataclass(frozen=True)
class KdfParams:
    """Argon2id cost. The default is RFC 9106's second recommended set (64 MiB, t=3, p=4)."""

    iterations: int = 3
    memory_kib: int = 64 * 1024
    lanes: int = 4
    salt: bytes = b""

    @classmethod
    def fresh(cls, iterations: int = 3, memory_kib: int = 64 * 1024, lanes: int = 4) -> KdfParams:
        return cls(iterations, memory_kib, lanes, os.urandom(SALT_SIZE))

    def as_header(self) -> dict[str, object]:
        return {
            "kdf": "argon2id",
            "iterations": self.iterations,
            "memory_kib": self.memory_kib,
            "lanes": self.lanes,
            "salt": self.salt.hex(),
        }

    @classmethod
    def from_header(cls, header: dict[str, object]) -> KdfParams:
        if header.get("kdf") != "argon2id":
            raise ValueError(f"unknown kdf {header.get('kdf')!r}")
        iterations, memory, lanes, salt = (
            header["iterations"],
            header["memory_kib"],
            header["lanes"],
            header["salt"],
        )
        if not (
            isinstance(iterations, int)
            and isinstance(memory, int)
            and isinstance(lanes, int)
            and isinstance(salt, str)
        ):
            raise ValueError("kdf parameters have the wrong types")
        params = cls(iterations, memory, lanes, bytes.fromhex(salt))
        params.check()
        return params

    def check(self) -> None:
        """Refuse parameters Argon2id cannot run (or that would take the machine down)."""
        if not 1 <= self.iterations <= _MAX_ITERATIONS:
            raise ValueError(f"iterations {self.iterations} out of range 1-{_MAX_ITERATIONS}")
        if not 1 <= self.lanes <= _MAX_LANES:
            raise ValueError(f"lanes {self.lanes} out of range 1-{_MAX_LANES}")
        if not 8 * self.lanes <= self.memory_kib <= _MAX_MEMORY_KIB:
            raise ValueError(
                f"memory_kib {self.memory_kib} out of range {8 * self.lanes}-{_MAX_MEMORY_KIB}"
            )
        if len(self.salt) < 8:
            raise ValueError("salt shorter than 8 bytes")


def derive(passphrase: bytes, params: KdfParams, length: int = 64) -> bytes:
    return Argon2id(
        salt=params.salt,
        length=length,
        iterations=params.iterations,
        lanes=params.lanes,
        memory_cost=params.memory_kib,
    ).derive(passphrase)
