"""Passphrase to key: Argon2id (RFC 9106), with its parameters kept beside the output."""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

SALT_SIZE = 16


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
        return cls(iterations, memory, lanes, bytes.fromhex(salt))


def derive(passphrase: bytes, params: KdfParams, length: int = 64) -> bytes:
    return Argon2id(
        salt=params.salt,
        length=length,
        iterations=params.iterations,
        lanes=params.lanes,
        memory_cost=params.memory_kib,
    ).derive(passphrase)
