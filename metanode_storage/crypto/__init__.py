"""Keystore, passphrase KDF, AEAD sealing and Ed25519 signatures."""
