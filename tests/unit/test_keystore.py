from __future__ import annotations

from pathlib import Path

import pytest

from metanode_storage.config.secrets import Secret
from metanode_storage.crypto.keystore import (
    KeyMaterial,
    open_keystore_bytes,
    read_keystore,
    seal_keystore,
    write_keystore,
)
from metanode_storage.errors import KeystoreDamaged, WrongPassphrase
from tests.conftest import cheap_kdf

PASS = Secret(b"a passphrase of some length")


def test_round_trip_keeps_every_key(tmp_path: Path) -> None:
    material = KeyMaterial.generate()
    path = tmp_path / "ks"
    write_keystore(path, material, PASS, cheap_kdf())
    again = read_keystore(path, PASS)
    assert again.signer.public_key == material.signer.public_key
    assert again.dedup_key == material.dedup_key
    assert again.map_key == material.map_key
    assert again.data_key(material.current_data_key) == material.data_key(material.current_data_key)
    assert path.stat().st_mode & 0o777 == 0o600


def test_wrong_passphrase_is_named_as_such() -> None:
    sealed = seal_keystore(KeyMaterial.generate(), PASS, cheap_kdf())
    with pytest.raises(WrongPassphrase):
        open_keystore_bytes(sealed, Secret(b"not the passphrase"))


@pytest.mark.parametrize("where", ["magic", "version", "header", "ciphertext", "tag"])
def test_damage_anywhere_is_detected(where: str) -> None:
    sealed = bytearray(seal_keystore(KeyMaterial.generate(), PASS, cheap_kdf()))
    header_len = int.from_bytes(sealed[5:9], "big")
    offset = {
        "magic": 0,
        "version": 4,
        "header": 9 + header_len // 2,
        "ciphertext": 9 + header_len + 20,
        "tag": len(sealed) - 1,
    }[where]
    sealed[offset] ^= 0x01
    with pytest.raises((KeystoreDamaged, WrongPassphrase)):
        open_keystore_bytes(bytes(sealed), PASS)


def test_damaged_ciphertext_is_not_blamed_on_the_passphrase() -> None:
    sealed = bytearray(seal_keystore(KeyMaterial.generate(), PASS, cheap_kdf()))
    sealed[-5] ^= 0xFF
    with pytest.raises(KeystoreDamaged):
        open_keystore_bytes(bytes(sealed), PASS)


def test_truncated_and_missing(tmp_path: Path) -> None:
    sealed = seal_keystore(KeyMaterial.generate(), PASS, cheap_kdf())
    with pytest.raises(KeystoreDamaged):
        open_keystore_bytes(sealed[:20], PASS)
    with pytest.raises(KeystoreDamaged, match="missing"):
        read_keystore(tmp_path / "absent", PASS)


def test_secrets_never_show_in_repr() -> None:
    material = KeyMaterial.generate()
    text = repr(material) + str(material.map_key) + repr(material.signer)
    assert material.map_key.reveal().hex() not in text
    assert "redacted" in text
    assert material.signing_keys[0].seed.reveal().hex() not in text
