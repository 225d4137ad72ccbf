"""The keystore's escrow copies (X-Wing, crypto/xwing.py): each opens with its own
identity only, and no changed byte anywhere in the file goes unnoticed by either opener."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metanode_storage.config.secrets import Secret
from metanode_storage.crypto.keystore import (
    KeyMaterial,
    open_keystore_bytes,
    open_keystore_with_identity,
    seal_keystore,
)
from metanode_storage.crypto.xwing import (
    WrongIdentity,
    XWingIdentity,
    XWingRecipient,
)
from metanode_storage.errors import InputError, KeystoreDamaged, KeystoreError
from tests.conftest import cheap_kdf

PASS = Secret(b"a passphrase of some length")
ALICE, BOB, EVE = (XWingIdentity.generate() for _ in range(3))


def _escrowed(*identities: XWingIdentity) -> tuple[KeyMaterial, bytes]:
    material = KeyMaterial.generate()
    material.recovery_recipients = [i.recipient.text() for i in identities]
    return material, seal_keystore(material, PASS, cheap_kdf())


def test_each_recipient_opens_its_own_copy_and_the_passphrase_still_works() -> None:
    material, sealed = _escrowed(ALICE, BOB)
    assert sealed[4] == 2  # the format that carries escrow copies
    for identity in (ALICE, BOB):
        opened = open_keystore_with_identity(sealed, identity)
        assert opened.map_key == material.map_key
        assert opened.data_key(material.current_data_key) == material.data_key(
            material.current_data_key
        )
        assert opened.signer.public == material.signer.public
    assert open_keystore_bytes(sealed, PASS).recovery_recipients == material.recovery_recipients
    with pytest.raises(WrongIdentity, match="no copy"):
        open_keystore_with_identity(sealed, EVE)


def test_a_keystore_without_recipients_keeps_the_first_format() -> None:
    sealed = seal_keystore(KeyMaterial.generate(), PASS, cheap_kdf())
    assert sealed[4] == 1
    with pytest.raises(WrongIdentity, match="never had a recovery recipient"):
        open_keystore_with_identity(sealed, ALICE)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_changed_byte_anywhere_is_caught_by_both_openers(data: st.DataObject) -> None:
    _, sealed = _ESCROWED
    offset = data.draw(st.integers(0, len(sealed) - 1), label="offset")
    flip = data.draw(st.integers(1, 255), label="xor")
    damaged = bytearray(sealed)
    damaged[offset] ^= flip
    with pytest.raises(KeystoreError):
        open_keystore_bytes(bytes(damaged), PASS)
    try:
        opened = open_keystore_with_identity(bytes(damaged), ALICE)
    except KeystoreError:
        return
    # HPKE does not cover the header and the other copies: a change there may leave
    # Alice's copy intact, and then it must open to exactly what was sealed.
    assert opened.map_key == _ESCROWED[0].map_key


_ESCROWED = _escrowed(ALICE, BOB)


def test_identity_and_recipient_text_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "id"
    ALICE.write_new(path)
    assert path.stat().st_mode & 0o777 == 0o600
    again = XWingIdentity.read(path)
    assert again.recipient == ALICE.recipient
    assert XWingRecipient.parse(ALICE.recipient.text()) == ALICE.recipient
    sealed = ALICE.recipient.seal(b"secret", b"info")
    assert again.open(sealed, b"info") == b"secret"
    with pytest.raises(WrongIdentity):
        again.open(sealed, b"other info")  # bound to what it is
    with pytest.raises(WrongIdentity):
        BOB.open(sealed, b"info")


@pytest.mark.parametrize(
    "text",
    ["", "mnr1:", "mnr1:AAAA", "age1qqqq", ALICE.recipient.text()[:-4], "mnr1:!!!!"],
)
def test_a_malformed_recipient_is_refused(text: str) -> None:
    with pytest.raises(InputError):
        XWingRecipient.parse(text)


def test_an_identity_file_never_replaces_anything(tmp_path: Path) -> None:
    existing = tmp_path / "existing"
    existing.write_text("keep me")
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "target-of-link")
    for path in (existing, link):
        with pytest.raises(InputError, match="exists"):
            ALICE.write_new(path)
    assert existing.read_text() == "keep me"
    assert not (tmp_path / "target-of-link").exists()


def test_damaged_escrow_header_is_damage() -> None:
    _, sealed = _ESCROWED
    header_len = int.from_bytes(sealed[5:9], "big")
    cut = sealed[: 9 + header_len + 100]  # shorter than the header says
    with pytest.raises(KeystoreDamaged):
        open_keystore_with_identity(cut, ALICE)
