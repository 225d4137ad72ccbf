"""The tamper-evident audit trail: signed events in an RFC 6962 Merkle tree, with signed
checkpoints in the C2SP signed-note format."""
