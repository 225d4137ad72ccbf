"""Erasure-coded chunks, written and read through the real writer, reader and local
providers: any K good fragments give back the exact bytes; fewer fail loudly."""

from __future__ import annotations

import os
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from metanode_storage.blockmap.records import ChunkRecord
from metanode_storage.crypto.aead import keyed_hash
from metanode_storage.engine.reader import ChunkReader
from metanode_storage.engine.writer import ChunkWriter
from metanode_storage.errors import IntegrityError, InvalidSetting
from metanode_storage.providers.fsspec_store import LocalBlobStore
from metanode_storage.redundancy import MAX_FRAGMENTS, Redundancy

DEDUP_KEY, DATA_KEY, OWNER_KEY = os.urandom(32), os.urandom(32), os.urandom(32)


def _providers(root: Path, count: int) -> dict[str, LocalBlobStore]:
    stores = {}
    for i in range(count):
        (root / f"p{i}").mkdir()
        stores[f"p{i}"] = LocalBlobStore(f"p{i}", str(root / f"p{i}"))
    return stores


def _write(
    providers: dict[str, LocalBlobStore], scheme: Redundancy, plaintext: bytes
) -> ChunkRecord:
    with ThreadPoolExecutor(4) as pool:
        writer = ChunkWriter(
            providers,
            pool,
            candidates=list(providers),
            redundancy=scheme,
            allow_under_replication=False,
            data_key_id="d1",
            data_key=DATA_KEY,
            owner_key=OWNER_KEY,
            compress=True,
            encrypt=True,
            pack_target_bytes=1 << 20,
        )
        chunk_id = keyed_hash(DEDUP_KEY, plaintext)
        return writer.finish([writer.write(chunk_id, plaintext)])[0]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    data_fragments=st.integers(2, 7),
    parity=st.integers(1, 4),
    size=st.integers(0, 200_000),
    seed=st.integers(0, 2**32),
    choices=st.data(),
)
def test_any_k_good_fragments_rebuild_the_chunk_exactly(
    tmp_path_factory: pytest.TempPathFactory,
    data_fragments: int,
    parity: int,
    size: int,
    seed: int,
    choices: st.DataObject,
) -> None:
    assume(data_fragments + parity <= MAX_FRAGMENTS)
    scheme = Redundancy.erasure(data_fragments, parity)
    rng = random.Random(seed)
    half = size // 2  # half random, half zeros: compression has something to do
    plaintext = rng.randbytes(half) + bytes(size - half)
    providers = _providers(tmp_path_factory.mktemp("ec"), scheme.pieces)
    record = _write(providers, scheme, plaintext)
    assert record.pieces == scheme.pieces and not record.is_short
    assert len({r.provider for r in record.replicas}) == scheme.pieces  # one per provider
    assert sorted(r.fragment for r in record.replicas) == list(range(scheme.pieces))

    pieces = list(record.replicas)
    rng.shuffle(pieces)
    broken = choices.draw(st.integers(0, parity))  # lost or corrupt, up to M of them
    lost_count = choices.draw(st.integers(0, broken))
    for piece in pieces[:lost_count]:
        providers[piece.provider].delete(piece.key)
    for piece in pieces[lost_count:broken]:
        (path,) = Path(providers[piece.provider].root).rglob(piece.key)
        body = bytearray(path.read_bytes())
        body[piece.offset + rng.randrange(piece.size)] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(body))

    reader = ChunkReader(providers, DEDUP_KEY, {"d1": DATA_KEY}, lambda _: False)
    try:
        got, _checks = reader.read(record)
        assert got == plaintext
        # One more lost fragment than M: the read fails, and never returns other bytes.
        for piece in pieces[broken : parity + 1]:
            providers[piece.provider].delete(piece.key)
        with pytest.raises(IntegrityError):
            reader.read(record)
    finally:
        reader.close()


@given(
    st.one_of(
        st.integers(1, 5).map(lambda n: f"replicas:{n}"),
        st.tuples(st.integers(2, 9), st.integers(1, 8))
        .filter(lambda km: sum(km) <= MAX_FRAGMENTS)
        .map(lambda km: f"ec:{km[0]}+{km[1]}"),
    )
)
def test_a_valid_redundancy_reads_back_as_written(text: str) -> None:
    scheme = Redundancy.parse(text)
    assert scheme.text() == text
    assert Redundancy.parse(f"  {text.upper()} ").text() == text  # case and spaces forgiven
    assert scheme.tolerates == scheme.pieces - scheme.needed


@given(st.text(max_size=20))
def test_anything_else_is_refused_with_a_hint(text: str) -> None:
    try:
        scheme = Redundancy.parse(text)
    except InvalidSetting as exc:
        assert exc.hint
        return
    # Only the two forms, in range, are accepted.
    assert text.strip().lower() == scheme.text()


@pytest.mark.parametrize(
    "text",
    [
        "ec:3+0",
        "ec:6+5",
        "replicas:0",
        "replicas:6",
        "ec:3",
        "raid5",
        "ec:3+-1",
        "ec:0+1",
        "ec:1+2",
    ],
)
def test_out_of_range_schemes_are_refused(text: str) -> None:
    with pytest.raises(InvalidSetting):
        Redundancy.parse(text)
