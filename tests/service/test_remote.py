"""The remote client (`metanode storage --remote URL`) against the service on 127.0.0.1:
over TLS 1.3 with a certificate the test makes, and through a recording proxy that shows
what a wire-tapper keeps: the sealed bodies hide the data, the block ids and the token."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from metanode_storage import Node, Secret
from metanode_storage.crypto.signing import NodeSigner
from tests.cli.test_examples import METANODE, ROOT
from tests.conftest import PASSPHRASE, CliResult, CliRunnerFn, run_cli
from tests.servers import LOOPBACK
from tests.service.test_service import Service, _start, _stop
from tests.service.test_tls import _client, _self_signed

MARKER = b"QUARTERLY-NUMBERS-DO-NOT-LEAK "


@pytest.fixture
def tls_service(home: Path, tmp_path: Path) -> Iterator[tuple[Service, Path]]:
    cert, key = _self_signed(tmp_path)
    service = _start(home, "--tls-cert", str(cert), "--tls-key", str(key), tls=_client(cert))
    yield service, cert
    assert _stop(service) == 0


def _client_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, url: str, token: str, cert: Path | None
) -> None:
    """A CI runner: no node of its own, only the URL, the token and (for a private CA)
    the certificate to trust."""
    monkeypatch.setenv("METANODE_HOME", str(tmp_path / "runner-has-no-node"))
    monkeypatch.delenv("METANODE_PASSPHRASE", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "runner-config"))
    monkeypatch.setenv("METANODE_REMOTE", url)
    monkeypatch.setenv("METANODE_TOKEN", token)
    if cert is not None:
        monkeypatch.setenv("METANODE_CACERT", str(cert))


def _cli(*args: str, stdin: bytes = b"") -> CliResult:
    return run_cli("storage", *args, stdin=stdin)


def test_a_ci_runner_stores_lists_verifies_and_retrieves_over_tls(
    tls_service: tuple[Service, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service, cert = tls_service
    _client_env(monkeypatch, tmp_path, f"https://{LOOPBACK}:{service.port}", service.token, cert)
    artefact = tmp_path / "build.tar"
    artefact.write_bytes(os.urandom(3_000_001))
    put = _cli("put", str(artefact), "--json")
    assert put.exit_code == 0, put.stderr
    block = json.loads(put.stdout)
    assert block["size_bytes"] == 3_000_001 and block["name"] == "build.tar"
    report = ("not_stored", "skipped", "left_out", "changed")  # the keys of a local put
    assert {key: block[key] for key in report} == {key: [] for key in report}
    block_id = block["block_id"]
    out = tmp_path / "fetched.tar"
    got = _cli("get", block_id[:8], "-o", str(out))
    assert got.exit_code == 0, got.stderr
    assert out.read_bytes() == artefact.read_bytes()
    assert _cli("get", block_id).stdout_bytes == artefact.read_bytes()
    small = _cli("put", "-", stdin=b"from stdin")
    assert small.exit_code == 0, small.stderr
    listed = json.loads(_cli("ls", "--json").stdout)
    assert {b["block_id"] for b in listed} == {block_id, small.stdout.strip()}
    verified = _cli("verify", block_id, "--json")
    assert verified.exit_code == 0, verified.stderr
    assert json.loads(verified.stdout)["blocks"][0]["replicas_checked"] == 3 * block["chunks"]
    status = _cli("distributed", "status", "--json")
    assert status.exit_code == 0 and json.loads(status.stdout)["blocks"] == 2
    text_status = _cli("distributed", "status")
    assert "Distributed Storage Status: Active" in text_status.stdout
    assert "transport: TLS 1.3 (X25519) with X-Wing-sealed bodies" in text_status.stdout
    # the node's key was pinned on first use, and it is the key `keys show` prints
    pins = json.loads(
        (tmp_path / "runner-config" / "metanode-storage" / "known-services.json").read_text()
    )
    with Node.open(service.home, Secret(PASSPHRASE.encode())) as node:
        key_text = node.keys.signer.public.text()
    assert pins[f"https://{LOOPBACK}:{service.port}"]["signing_key"] == key_text

    missing = _cli("get", "0" * 8 + "-0000-0000-0000-" + "0" * 12, "-o", str(tmp_path / "none"))
    assert missing.exit_code == 5 and not (tmp_path / "none").exists()
    assert _cli("ls", block_id).exit_code == 2  # trees are local-only: a clear refusal
    monkeypatch.setenv("METANODE_TOKEN", "not-the-token")
    refused = _cli("ls")
    assert refused.exit_code == 4 and "token" in refused.stderr
    monkeypatch.delenv("METANODE_TOKEN")
    assert _cli("ls").exit_code == 2  # no token at all: said before anything is sent


def test_a_changed_service_key_is_refused(
    tls_service: tuple[Service, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service, cert = tls_service
    url = f"https://{LOOPBACK}:{service.port}"
    _client_env(monkeypatch, tmp_path, url, service.token, cert)
    assert _cli("ls").exit_code == 0  # pinned now
    pins_path = tmp_path / "runner-config" / "metanode-storage" / "known-services.json"
    pins = json.loads(pins_path.read_text())
    stranger = NodeSigner.generate().public  # another node's key
    pins[url]["signing_key"] = stranger.text()
    pins_path.write_text(json.dumps(pins))
    changed = _cli("ls")
    assert changed.exit_code == 4 and "--service-key" in changed.stderr
    given_wrong = _cli("--service-key", stranger.text(), "ls")
    assert given_wrong.exit_code == 4
    with Node.open(service.home, Secret(PASSPHRASE.encode())) as node:
        real = node.keys.signer.public.text()
    assert _cli("--service-key", real, "ls").exit_code == 0  # given: the pin follows
    assert json.loads(pins_path.read_text())[url]["signing_key"] == real
    assert _cli("ls").exit_code == 0  # and is kept
    monkeypatch.delenv("METANODE_CACERT")  # the self-signed certificate is not trusted
    assert _cli("ls").exit_code == 6


class _Recorder:
    """A TCP proxy on 127.0.0.1 that keeps every byte each way, and can flip one byte of
    the service's answer at a given offset."""

    def __init__(self, target: int, flip_at: int | None = None) -> None:
        self.up = bytearray()
        self.down = bytearray()
        self._target = target
        self._flip_at = flip_at
        self._listener = socket.create_server((LOOPBACK, 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection((LOOPBACK, self._target))
            threading.Thread(target=self._pump, args=(client, server, self.up), daemon=True).start()
            threading.Thread(
                target=self._pump, args=(server, client, self.down, self._flip), daemon=True
            ).start()

    def _flip(self, offset: int, data: bytes) -> bytes:
        if self._flip_at is not None and offset <= self._flip_at < offset + len(data):
            changed = bytearray(data)
            changed[self._flip_at - offset] ^= 0x40
            return bytes(changed)
        return data

    @staticmethod
    def _pump(
        source: socket.socket,
        sink: socket.socket,
        record: bytearray,
        change: Callable[[int, bytes], bytes] = lambda _, data: data,
    ) -> None:
        try:
            while data := source.recv(65536):
                data = change(len(record), data)
                record += data
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._listener.close()


def test_a_wire_tapper_sees_neither_data_nor_ids_nor_token(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plain HTTP on loopback through a recording proxy: what TLS would hide today and a
    quantum computer could open tomorrow. The sealed bodies keep it all closed."""
    service = _start(home)
    recorder = _Recorder(service.port)
    try:
        _client_env(
            monkeypatch, tmp_path, f"http://{LOOPBACK}:{recorder.port}", service.token, None
        )
        payload = MARKER * 20_000
        put = _cli("put", "-", stdin=payload)
        assert put.exit_code == 0, put.stderr
        block_id = put.stdout.strip()
        assert _cli("get", block_id).stdout_bytes == payload
        assert block_id in _cli("ls").stdout
        assert _cli("verify", block_id).exit_code == 0
    finally:
        recorder.close()
        assert _stop(service) == 0
    wire = bytes(recorder.up) + bytes(recorder.down)
    assert len(recorder.up) > len(payload) and len(recorder.down) > len(payload)
    for secret in (MARKER, service.token.encode(), block_id.encode(), block_id[:8].encode()):
        assert secret not in wire, secret
    assert b"POST /v1/sealed" in wire  # the one route a tapper learns


def test_a_byte_changed_on_the_wire_is_caught_and_nothing_is_written(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = _start(home)
    data = os.urandom(1_000_000)
    with Node.open(home, Secret(PASSPHRASE.encode())) as node:
        block_id = node.store_bytes(data).block_id
    recorder = _Recorder(service.port, flip_at=40_000)  # inside the first data frames
    try:
        _client_env(
            monkeypatch, tmp_path, f"http://{LOOPBACK}:{recorder.port}", service.token, None
        )
        target = tmp_path / "fetched.bin"
        damaged = _cli("get", block_id, "-o", str(target))
        assert damaged.exit_code == 10, damaged.stderr
        assert not target.exists()
        assert list(tmp_path.glob(".fetched.bin.*")) == []  # no partial file left either
    finally:
        recorder.close()
        assert _stop(service) == 0


def test_the_ci_example_runs_against_a_remote_service(
    tls_service: tuple[Service, Path], tmp_path: Path
) -> None:
    service, cert = tls_service
    env = {
        **os.environ,
        "METANODE": METANODE,
        "METANODE_REMOTE": f"https://{LOOPBACK}:{service.port}",
        "METANODE_TOKEN": service.token,
        "METANODE_CACERT": str(cert),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "METANODE_HOME": str(tmp_path / "no-node-here"),
    }
    env.pop("METANODE_PASSPHRASE", None)
    artefact = tmp_path / "dist.whl"
    artefact.write_bytes(os.urandom(200_000))
    done = subprocess.run(
        ["bash", "examples/ci-store-retrieve.sh", str(artefact)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    block_id = (tmp_path / "dist.whl.block-id").read_text().strip()
    with Node.open(service.home, Secret(PASSPHRASE.encode())) as node:
        assert node.retrieve_bytes(block_id) == artefact.read_bytes()


def test_a_listing_larger_than_a_frame_comes_through(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Node.open(home, Secret(PASSPHRASE.encode())) as node:
        stored = node.store_many([(f"artefact-{i}.tar", os.urandom(100)) for i in range(400)])
    service = _start(home)
    try:
        _client_env(monkeypatch, tmp_path, f"http://{LOOPBACK}:{service.port}", service.token, None)
        listed = _cli("ls", "--json")
        assert listed.exit_code == 0, listed.stderr
        assert len(listed.stdout) > 64 * 1024  # more than one sealed frame holds
        assert {b["block_id"] for b in json.loads(listed.stdout)} == {b.block_id for b in stored}
    finally:
        assert _stop(service) == 0


def test_a_tree_is_refused_remotely_with_a_clear_error(
    tls_service: tuple[Service, Path],
    home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "file").write_bytes(b"inside a tree")
    with Node.open(home, Secret(PASSPHRASE.encode())) as node:  # beside the service
        tree_id = node.store_tree([tree])[0].block_id
    service, cert = tls_service
    _client_env(monkeypatch, tmp_path, f"https://{LOOPBACK}:{service.port}", service.token, cert)
    out = tmp_path / "tree-out"
    refused = _cli("get", tree_id, "-o", str(out))
    assert refused.exit_code != 0
    assert "a directory tree cannot be retrieved remotely" in refused.stderr
    assert not out.exists()


def test_local_commands_refuse_rather_than_act_on_this_machines_node(
    cli: CliRunnerFn, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An operator's shell with METANODE_REMOTE exported, on a machine that has a node of
    its own: `rm` meant for the service's node must not delete a block here."""
    kept = cli("storage", "put", "-", stdin=b"on this machine's node").stdout.strip()
    provider_files = sorted(p for p in (home / "providers").rglob("*") if p.is_file())
    monkeypatch.setenv("METANODE_REMOTE", f"https://{LOOPBACK}:9")  # nothing listens there
    monkeypatch.setenv("METANODE_TOKEN", "t" * 43)
    local_only = [
        ("rm", kept),
        ("gc",),
        ("repair",),
        ("keys", "rotate"),
        ("audit", "verify"),
        ("distributed", "metrics"),
        ("distributed", "init", "--home", str(tmp_path / "new-node")),
        ("providers", "list"),
        ("session", "status"),
        ("lock", "status"),
    ]
    for args in local_only:
        refused = cli("storage", *args)
        assert refused.exit_code == 2, (args, refused.stderr)
        assert "not available through --remote" in refused.stderr, args
    assert not (tmp_path / "new-node").exists()
    assert sorted(p for p in (home / "providers").rglob("*") if p.is_file()) == provider_files
    monkeypatch.delenv("METANODE_REMOTE")
    assert cli("storage", "get", kept).stdout_bytes == b"on this machine's node"
