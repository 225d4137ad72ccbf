"""Proof receipts checked by a third party, key rotation, and integrity audits for cron."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from metanode_storage import Secret
from metanode_storage.crypto.keystore import KeyMaterial, SigningKeyRecord, update_keystore
from metanode_storage.crypto.signing import NodeSigner
from metanode_storage.engine.node import Node
from tests.conftest import PASSPHRASE, CliRunnerFn, blob_files, provider_dirs


def _public_key(cli: CliRunnerFn, index: int = -1) -> str:
    keys = json.loads(cli("storage", "keys", "show", "--json").stdout)["signing_keys"]
    return str(keys[index]["public_key"])


def _third_party(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """A separate process with no node home, no keystore and no passphrase."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("METANODE_")}
    env["HOME"] = str(cwd)
    return subprocess.run(
        [sys.executable, "-m", "metanode_storage", "storage", "proof", "verify", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        check=False,
    )


@pytest.fixture
def exported(cli: CliRunnerFn, tmp_path: Path) -> tuple[Path, Path, str]:
    data = tmp_path / "contract.pdf"
    data.write_bytes(os.urandom(40_000))
    block_id = cli("storage", "put", str(data)).stdout.strip()
    proof = tmp_path / "contract.proof.json"
    assert cli("storage", "proof", "export", block_id, "-o", str(proof)).exit_code == 0
    return proof, data, _public_key(cli)


def test_a_third_party_verifies_with_only_the_public_key(
    exported: tuple[Path, Path, str], tmp_path: Path
) -> None:
    proof, data, public_key = exported
    done = _third_party(str(proof), "--data", str(data), "--public-key", public_key, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "proof valid; the data matches" in done.stdout


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("data_hash", "00" * 32, "signature does not verify"),
        ("size", 1, "signature does not verify"),
        ("timestamp", 1, "signature does not verify"),
        ("block_id", "another-block", "signature does not verify"),
        ("manifest_hash", "11" * 32, "signature does not verify"),
        ("proof_type", "other", "signature does not verify"),
        ("signature", "22" * 64, "signature does not verify"),
        ("verification_key", "33" * 32, "different verification key"),
        ("key_id", "0000000000000000", "key id does not belong"),
        ("leaf_index", 1, "signature does not verify"),
        ("tree_size", 2, "signature does not verify"),
        ("root", "55" * 32, "signature does not verify"),
        ("inclusion_path", ["66" * 32], "signature does not verify"),
        ("inclusion_path", "66", "incomplete or has fields of the wrong type"),
        ("size", "1", "incomplete or has fields of the wrong type"),
        ("version", 1, "incomplete or has fields of the wrong type"),
    ],
)
def test_every_field_of_a_proof_is_protected(
    exported: tuple[Path, Path, str], tmp_path: Path, field: str, value: object, message: str
) -> None:
    proof, _, public_key = exported
    document = json.loads(proof.read_text())
    document["proof"][field] = value
    proof.write_text(json.dumps(document))
    done = _third_party(str(proof), "--public-key", public_key, cwd=tmp_path)
    assert done.returncode == 10
    assert message in done.stdout


def test_blocks_stored_together_export_as_a_bundle_checked_with_one_signature(
    node: Node, cli: CliRunnerFn, tmp_path: Path
) -> None:
    objects = [(f"artifact-{i}", os.urandom(100 + i)) for i in range(5)]
    blocks = node.store_many(objects)
    seals = {b.vm_signature for b in blocks}
    assert len(seals) == 1  # one signature for the five blocks
    bundle = tmp_path / "bundle.json"
    ids = [b.block_id for b in blocks]
    assert cli("storage", "proof", "export", *ids, "-o", str(bundle)).exit_code == 0
    public_key = _public_key(cli)
    done = _third_party(str(bundle), "--public-key", public_key, "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stdout
    report = json.loads(done.stdout)
    assert report["ok"] and report["proofs"] == 5
    assert [r["block_id"] for r in report["results"]] == ids
    # each proof stands alone: one taken out verifies with its data, offline
    document = json.loads(bundle.read_text())
    single = tmp_path / "one.json"
    single.write_text(json.dumps(document["proofs"][3]))
    data = tmp_path / "artifact-3"
    data.write_bytes(objects[3][1])
    done = _third_party(str(single), "--data", str(data), "--public-key", public_key, cwd=tmp_path)
    assert done.returncode == 0 and "the data matches" in done.stdout
    # a proof whose path was bent fails, and is named; the others still pass
    document["proofs"][2]["proof"]["inclusion_path"][0] = "77" * 32
    bundle.write_text(json.dumps(document))
    done = _third_party(str(bundle), "--public-key", public_key, "--json", cwd=tmp_path)
    report = json.loads(done.stdout)
    assert done.returncode == 10
    assert [r["ok"] for r in report["results"]] == [True, True, False, True, True]


def test_other_data_or_another_key_is_refused(
    exported: tuple[Path, Path, str], tmp_path: Path
) -> None:
    proof, data, public_key = exported
    other = tmp_path / "other.pdf"
    other.write_bytes(data.read_bytes()[:-1] + b"!")
    done = _third_party(str(proof), "--data", str(other), "--public-key", public_key, cwd=tmp_path)
    assert done.returncode == 10 and "SHA-256 differs" in done.stdout
    stranger = "44" * 32
    done = _third_party(str(proof), "--public-key", stranger, cwd=tmp_path)
    assert done.returncode == 10 and "different verification key" in done.stdout


def test_signing_key_rotation_keeps_old_proofs_and_trail_valid(
    cli: CliRunnerFn, exported: tuple[Path, Path, str], tmp_path: Path
) -> None:
    proof, data, old_key = exported
    rotated = json.loads(cli("storage", "keys", "rotate", "--json").stdout)
    new_key = _public_key(cli)
    assert rotated["new_public_key"] == new_key != old_key
    keys = json.loads(cli("storage", "keys", "show", "--json").stdout)["signing_keys"]
    assert keys[0]["retired_at"] and keys[1]["retired_at"] is None
    # proofs made before the rotation still verify under the retired key
    done = _third_party(str(proof), "--data", str(data), "--public-key", old_key, cwd=tmp_path)
    assert done.returncode == 0, done.stdout
    # new blocks are signed by the new key, and old blocks still retrieve and verify
    later = cli("storage", "put", "-", "--json", stdin=b"after rotation")
    assert json.loads(later.stdout)["proof"]["verification_key"] == new_key.split(":")[0]
    assert cli("storage", "verify", "--all").exit_code == 0
    trail = cli("storage", "audit", "verify")
    assert trail.exit_code == 0, trail.stdout
    hand_over = json.loads(
        cli("storage", "audit", "list", "--type", "key_rotation", "--json").stdout
    )
    assert hand_over[0]["detail"]["new_public_key"] == new_key
    assert hand_over[0]["key_id"] == rotated["old_key_id"]  # the old key signed the hand-over
    # an auditor with both public keys can check the whole trail offline
    offline = cli(
        "storage",
        "audit",
        "verify",
        "--trail",
        str(tmp_path / "node" / "audit.sqlite"),
        "--public-key",
        old_key,
        "--public-key",
        new_key,
    )
    assert offline.exit_code == 0, offline.stdout


def test_data_key_rotation_rewraps_without_reuploading(cli: CliRunnerFn, home: Path) -> None:
    payloads = {
        cli("storage", "put", "-", stdin=d).stdout.strip(): d
        for d in (os.urandom(3000), os.urandom(300_000))
    }
    before = {p: p.read_bytes() for p in blob_files(home)}
    result = json.loads(cli("storage", "keys", "rotate", "--data", "--json").stdout)
    assert result["reuploaded"] == 0 and result["rewrapped"] >= 2
    assert {p: p.read_bytes() for p in blob_files(home)} == before  # no blob touched
    keys = json.loads(cli("storage", "keys", "show", "--json").stdout)["data_keys"]
    assert [k["key_id"] for k in keys] == [result["new_key_id"]]
    for block_id, data in payloads.items():
        assert cli("storage", "get", block_id).stdout_bytes == data


def test_integrity_audit_exit_codes_and_report(cli: CliRunnerFn, home: Path) -> None:
    ids = [cli("storage", "put", "-", stdin=os.urandom(2000)).stdout.strip() for _ in range(4)]
    clean = cli("storage", "distributed", "audit", "--integrity", "--all", "--json")
    assert clean.exit_code == 0, clean.stdout
    report = json.loads(clean.stdout)
    assert report["blocks_checked"] == 4 and report["replicas_checked"] == 12
    assert report["data_integrity_percent"] == 100.0

    healthy = cli("storage", "distributed", "audit", "--integrity", "--quick", "--json")
    assert healthy.exit_code == 0, healthy.stdout  # a pack is bigger than any piece in it
    assert json.loads(healthy.stdout)["violations"] == []

    blob_files(home)[0].write_bytes(b"\x00" * 50)  # same name, wrong bytes
    bad = cli("storage", "distributed", "audit", "--integrity", "--json")
    assert bad.exit_code == 10
    assert json.loads(bad.stdout)["violations"][0]["state"] == "corrupt"
    status = json.loads(cli("storage", "distributed", "status", "--json").stdout)
    assert status["faulty_replicas"] == 1  # findings feed status (and repair)
    summary = cli("storage", "distributed", "audit")
    assert "Integrity Violations: 1" in summary.stdout
    assert "Storage Operations: 4" in summary.stdout

    blob_files(home)[1].unlink()  # missing: caught without downloading anything
    quick = cli("storage", "distributed", "audit", "--integrity", "--quick", "--json")
    assert quick.exit_code == 10
    assert "missing" in {v["state"] for v in json.loads(quick.stdout)["violations"]}
    assert len(ids) == 4


def test_integrity_audit_samples_least_recently_audited_first(cli: CliRunnerFn) -> None:
    ids = {cli("storage", "put", "-", stdin=os.urandom(1000)).stdout.strip() for _ in range(6)}
    seen: set[str] = set()
    for _ in range(3):
        result = cli("storage", "distributed", "audit", "--integrity", "--sample", "2", "--json")
        assert result.exit_code == 0
        assert json.loads(result.stdout)["blocks_checked"] == 2
        listed = json.loads(cli("storage", "audit", "list", "--type", "verify", "--json").stdout)
        seen = {e["block_id"] for e in listed}
    assert seen == ids  # three daily samples of two covered all six blocks


def test_integrity_audit_reports_an_unreachable_provider(cli: CliRunnerFn, home: Path) -> None:
    cli("storage", "put", "-", stdin=os.urandom(1000))
    gone = provider_dirs(home)[0]
    gone.rename(gone.with_name("away"))
    result = cli("storage", "distributed", "audit", "--integrity", "--json")
    assert result.exit_code == 6
    assert json.loads(result.stdout)["unreachable"] == ["local-1"]


def test_a_file_nested_past_the_json_parser_s_depth_is_not_a_proof(tmp_path: Path) -> None:
    """A third party's file of 100,000 nested lists ended in an internal error (exit 70)."""
    nested = tmp_path / "nested.json"
    nested.write_text("[" * 100_000 + "]" * 100_000)
    checked = _third_party(str(nested), "--public-key", "00" * 32, cwd=tmp_path)
    assert checked.returncode == 7 and "cannot read the proof" in checked.stderr


def test_a_proof_re_signed_with_a_throwaway_key_does_not_pass(
    exported: tuple[Path, Path, str], tmp_path: Path
) -> None:
    """Without --public-key nothing says who signed: the exit code must not say 'valid'."""
    proof, data, public_key = exported
    done = _third_party(str(proof), "--data", str(data), cwd=tmp_path)
    assert done.returncode == 11, done.stdout + done.stderr
    assert "UNTRUSTED" in done.stdout and "proof valid" not in done.stdout
    trusted = _third_party(
        str(proof), "--data", str(data), "--public-key", public_key, cwd=tmp_path
    )
    assert trusted.returncode == 0 and "proof valid" in trusted.stdout


def test_an_auditor_checks_a_newer_checkpoint_against_a_kept_one(
    cli: CliRunnerFn, home: Path, tmp_path: Path
) -> None:
    for data in (b"one", b"two", b"three"):
        cli("storage", "put", "-", stdin=data)
    kept = tmp_path / "kept.note"
    assert cli("storage", "audit", "checkpoint", "-o", str(kept)).exit_code == 0
    for data in (b"four", b"five"):
        cli("storage", "put", "-", stdin=data)
    newer = tmp_path / "newer.json"
    made = cli("storage", "audit", "checkpoint", "--since", str(kept), "-o", str(newer))
    assert made.exit_code == 0, made.stderr
    key = _public_key(cli)
    args = ("audit", "verify", "--since", str(kept), "--checkpoint", str(newer))
    env = {k: v for k, v in os.environ.items() if not k.startswith("METANODE_")}
    auditor = subprocess.run(  # no node, no keystore: the two files and the public key
        [sys.executable, "-m", "metanode_storage", "storage", *args, "--public-key", key],
        capture_output=True, text=True, env=env, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert auditor.returncode == 0, auditor.stdout + auditor.stderr
    assert "extends the one kept" in auditor.stdout
    document = json.loads(newer.read_text())
    document["proof"][0] = "00" * 32  # a trail that dropped or changed an event
    newer.write_text(json.dumps(document))
    forged = cli("storage", *args, "--public-key", key)
    assert forged.exit_code == 10 and "does not extend" in forged.stdout
    assert cli("storage", *args).exit_code == 2  # no trusted key: refused, never 0
    newer.write_text("[" * 100_000 + "]" * 100_000)  # past the JSON parser's depth
    nested = cli("storage", *args, "--public-key", key)
    assert nested.exit_code == 7 and "is not a checkpoint with a proof" in nested.stderr


def test_keys_rotate_pq_upgrades_an_ed25519_node(
    cli: CliRunnerFn, home: Path, tmp_path: Path
) -> None:
    def ed25519_only(material: KeyMaterial) -> None:  # a node from before TLSLS
        material.signing_keys[:] = [SigningKeyRecord.of(NodeSigner.generate(hybrid=False), 1)]

    update_keystore(home / "keystore.mnk", Secret(PASSPHRASE.encode()), ed25519_only)
    data = tmp_path / "old.bin"
    data.write_bytes(os.urandom(30_000))
    old_block = cli("storage", "put", str(data)).stdout.strip()
    old_key = _public_key(cli)
    assert ":" not in old_key

    rotated = json.loads(cli("storage", "keys", "rotate", "--pq", "--json").stdout)
    assert rotated["hybrid"] is True
    shown = cli("storage", "keys", "show").stdout
    assert shown.count("ml-dsa-65 ") == 1 and "Ed25519 + ML-DSA-65 (current)" in shown
    new_key = _public_key(cli)
    assert new_key == rotated["new_public_key"] and new_key.startswith(new_key.split(":")[0])

    new_block = cli("storage", "put", "-", stdin=b"after the upgrade").stdout.strip()
    for block in (old_block, new_block):
        assert cli("storage", "verify", block).exit_code == 0
    assert cli("storage", "audit", "verify").exit_code == 0

    new_proof, old_proof = tmp_path / "new.json", tmp_path / "old.json"
    assert cli("storage", "proof", "export", new_block, "-o", str(new_proof)).exit_code == 0
    assert cli("storage", "proof", "export", old_block, "-o", str(old_proof)).exit_code == 0
    assert _third_party(str(new_proof), "--public-key", new_key, cwd=tmp_path).returncode == 0
    assert _third_party(str(old_proof), "--public-key", old_key, cwd=tmp_path).returncode == 0
    document = json.loads(new_proof.read_text())
    del document["proof"]["ml_dsa_signature"]
    new_proof.write_text(json.dumps(document))
    stripped = _third_party(str(new_proof), "--public-key", new_key, cwd=tmp_path)
    assert stripped.returncode == 10 and "does not verify" in stripped.stdout
