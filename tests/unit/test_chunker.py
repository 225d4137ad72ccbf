"""The chunker's fast paths cut exactly where FastCDC's cut_stream does."""

from __future__ import annotations

import io
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metanode_storage.engine.chunker import MAX_CHUNK, MIN_CHUNK, Chunker

_KEY = b"k" * 32


def _reference(data: bytes) -> list[bytes]:
    chunker = Chunker(_KEY)
    return [bytes(c.data) for c in chunker._cdc.cut_stream(io.BytesIO(data))]


class _Trickle(io.RawIOBase):
    """A stream that returns at most ``step`` bytes per read, as a pipe or socket may."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data = memoryview(data)
        self._step = step

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self._step if n < 0 else min(n, self._step)
        part, self._data = self._data[:n], self._data[n:]
        return bytes(part)


_SIZES = [0, 1, MIN_CHUNK, MIN_CHUNK + 1, 2 * MAX_CHUNK - 1, 2 * MAX_CHUNK, 2 * MAX_CHUNK + 1]


@pytest.mark.parametrize("size", [*_SIZES, 5 * MAX_CHUNK + 12345])
def test_cuts_match_fastcdc_at_the_fast_path_boundaries(size: int) -> None:
    data = random.Random(size).randbytes(size)
    expected = _reference(data)
    assert list(Chunker(_KEY).chunks(io.BytesIO(data))) == expected
    assert list(Chunker(_KEY).chunks(_Trickle(data, 65_537))) == expected  # type: ignore[arg-type]
    assert b"".join(expected) == data


@settings(max_examples=25, deadline=None)
@given(size=st.integers(0, 3 * MAX_CHUNK), step=st.integers(1, 3 * MAX_CHUNK), seed=st.integers())
def test_cuts_match_fastcdc_for_any_size_and_read_pattern(size: int, step: int, seed: int) -> None:
    data = random.Random(seed).randbytes(size)
    got = list(Chunker(_KEY).chunks(_Trickle(data, max(step, 4096))))  # type: ignore[arg-type]
    assert got == _reference(data)
