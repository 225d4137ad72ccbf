"""What a repair pass reports: an action per chunk, and what its survey found.

``repair`` (engine/repair.py) and ``repair --rewrite`` (engine/rewrite.py) fill the
same report; the CLI, the service's backup manager and the audit trail read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from metanode_storage.engine.maintenance import NOT_WRITTEN

SURVEY_NONE, SURVEY_EXISTS, SURVEY_VERIFY = "none", "exists", "verify"
# Why a chunk could not be repaired: the data is lost (integrity), or only the
# providers are (an outage: retry later).
NO_GOOD_COPY, NO_TARGET = "no_good_copy", "no_target"


@dataclass
class RepairAction:
    chunk: str  # first 12 hex digits of the chunk's keyed address
    reasons: dict[str, str]  # provider -> missing / corrupt / offline / short
    new_replicas: list[str] = field(default_factory=list)  # providers written to
    cleaned: list[str] = field(default_factory=list)  # providers whose old copy was deleted
    error: str = ""
    cause: str = ""  # NO_GOOD_COPY or NO_TARGET when error is set


@dataclass
class RepairReport:
    dry_run: bool
    actions: list[RepairAction] = field(default_factory=list)
    backups_cleaned: int = 0
    survey: str = SURVEY_NONE
    found_missing: int = 0  # replicas the survey found missing (SURVEY_EXISTS)
    found_bad: int = 0  # replicas the survey found missing or corrupt (SURVEY_VERIFY)
    unsurveyed: list[str] = field(default_factory=list)  # providers that could not be checked
    # providers no longer in the config that the map still names replicas on (SURVEY_EXISTS)
    unconfigured: list[str] = field(default_factory=list)
    # provider -> what was wrong with its map backup log, and whether it was written anew
    map_backups: dict[str, str] = field(default_factory=dict)

    @property
    def repaired(self) -> int:
        return sum(1 for a in self.actions if a.new_replicas and not a.error)

    @property
    def failed(self) -> int:
        return sum(1 for a in self.actions if a.error)

    @property
    def map_backups_failed(self) -> bool:
        """A provider's broken map backup could not be written anew."""
        return any(NOT_WRITTEN in outcome for outcome in self.map_backups.values())

    @property
    def lost(self) -> int:
        """Chunks with no good copy left anywhere: nothing can heal them."""
        return sum(1 for a in self.actions if a.cause == NO_GOOD_COPY)
