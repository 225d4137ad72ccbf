"""TLS for the service: TLS 1.3 only, from a certificate and key the operator gives.

TLS 1.3 because its key exchange is always ephemeral (a stolen key does not open
recorded sessions) and it has no renegotiation or static-RSA modes to misconfigure.
The linked OpenSSL picks the group; with OpenSSL 3.0 that is X25519, which a
quantum adversary recording today could break later (docs/TLSLS.md).
"""

from __future__ import annotations

import ssl
from pathlib import Path

from metanode_storage.errors import InvalidSetting


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    for path in (cert, key):
        if not path.is_file():
            raise InvalidSetting(f"cannot read {path}: no such file")
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        raise InvalidSetting(
            f"cannot use --tls-cert {cert} with --tls-key {key}: {exc}",
            "give a PEM certificate (chain) and the PEM private key that matches it",
        ) from None
    return context
