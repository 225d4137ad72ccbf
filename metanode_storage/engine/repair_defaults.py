"""Repair's defaults, apart from repair itself: the CLI's options show them, and `--help`
must not import the engine to do so."""

DEFAULT_OFFLINE_GRACE = 600.0  # seconds Offline before a provider's replicas are replaced
DEFAULT_LIMIT = 1000  # chunks per pass
