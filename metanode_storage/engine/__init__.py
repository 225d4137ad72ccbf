"""The use cases (init, store, retrieve, verify, remove, status) and the block pipeline."""
