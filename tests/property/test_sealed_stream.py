"""The remote tunnel's sealed frames (transport/sealed.py): what goes in comes out, and a
changed, dropped, reordered or cut frame never opens as something else."""

from __future__ import annotations

import io
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metanode_storage.crypto.xwing import XWingIdentity
from metanode_storage.transport.sealed import (
    FRAME,
    FrameOpener,
    FrameSealer,
    OpenedReader,
    SealedStreamBroken,
    SealedWriter,
    envelope_length,
    new_request,
    open_envelope,
)

SERVICE = XWingIdentity.generate()


def _stream(key: bytes, head: dict[str, object], data: bytes) -> bytes:
    out = io.BytesIO()
    sealer = FrameSealer(key, b"up")
    out.write(sealer.head(head))
    writer = SealedWriter(sealer, out.write)
    writer.write(data)
    writer.finish()
    return out.getvalue()


def _open(key: bytes, raw: bytes) -> tuple[dict[str, object], bytes]:
    opener = FrameOpener(io.BytesIO(raw).read, key, b"up")
    head = opener.head()
    reader = OpenedReader(opener)
    pieces = []
    while piece := reader.read(10_000):  # as Node.store reads it: a piece at a time
        pieces.append(piece)
    return head, b"".join(pieces)


@settings(max_examples=40, deadline=None)
@given(
    size=st.integers(0, 3 * FRAME + 17),
    head_size=st.integers(0, 3 * FRAME),
)
def test_what_is_sealed_opens_to_itself(size: int, head_size: int) -> None:
    data = os.urandom(size)
    key, envelope = new_request(SERVICE.recipient)
    assert open_envelope(SERVICE, envelope[4:]) == key
    assert envelope_length(envelope[:4]) == len(envelope) - 4
    head: dict[str, object] = {"op": "ls", "filler": "x" * head_size}  # may span frames
    assert _open(key, _stream(key, head, data)) == (head, data)
    opener = FrameOpener(io.BytesIO(_stream(key, head, data)).read, key, b"up")
    assert opener.head() == head and OpenedReader(opener).read() == data  # read() reads all


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_any_change_or_cut_is_refused(draw: st.DataObject) -> None:
    key = os.urandom(32)
    raw = _stream(key, {"op": "put"}, os.urandom(2 * FRAME + 5))
    kind = draw.draw(st.sampled_from(["flip", "cut", "swap", "other key", "other way"]))
    if kind == "flip":
        at = draw.draw(st.integers(0, len(raw) - 1))
        changed = bytearray(raw)
        changed[at] ^= draw.draw(st.integers(1, 255))
        raw = bytes(changed)
    elif kind == "cut":
        raw = raw[: draw.draw(st.integers(0, len(raw) - 1))]
    elif kind == "swap":  # the two full data frames, exchanged
        head_end = 4 + int.from_bytes(raw[:4], "big") & 0x7FFFFFFF
        size = 4 + FRAME + 16
        a, b = raw[head_end : head_end + size], raw[head_end + size : head_end + 2 * size]
        raw = raw[:head_end] + b + a + raw[head_end + 2 * size :]
    with pytest.raises(SealedStreamBroken):
        if kind == "other key":
            _open(os.urandom(32), raw)
        elif kind == "other way":
            opener = FrameOpener(io.BytesIO(raw).read, key, b"down")  # a reflected stream
            opener.head()
        else:
            _open(key, raw)


def test_a_head_nested_past_the_parser_s_depth_is_refused() -> None:
    """Anyone may seal to the service's public key, before any token is checked: a head
    of 100,000 nested lists raised RecursionError out of the service's handler."""
    key = os.urandom(32)
    sealer = FrameSealer(key, b"up")
    body = b"[" * 100_000 + b"]" * 100_000
    whole = len(body).to_bytes(4, "big") + body
    raw = b"".join(
        sealer.frame(whole[i : i + FRAME], last=i + FRAME >= len(whole))
        for i in range(0, len(whole), FRAME)
    )
    with pytest.raises(SealedStreamBroken, match="not a JSON object"):
        FrameOpener(io.BytesIO(raw).read, key, b"up").head()
