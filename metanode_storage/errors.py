"""The error tree and the exit codes it maps to.

Every error the engine raises on purpose is a ``MetanodeError``. Each class
owns its exit code and a stable reference (``MN-xxx``) so that scripts, cron
jobs and support questions can name a failure without parsing prose. The
message says what happened; ``hint`` says what to do about it. This module
uses the standard library only, so that any layer may import it.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes. Documented in README.md; pinned by a test."""

    OK = 0
    ERROR = 1  # any other MetanodeError
    USAGE = 2  # bad command line (Click's own code)
    NOT_INITIALISED = 3  # no node home, or a damaged config
    KEYSTORE = 4  # wrong passphrase or a damaged keystore
    NOT_FOUND = 5  # unknown block id
    PROVIDER = 6  # a provider is unreachable, full or refused us
    INPUT = 7  # the input file could not be read or the output written
    BUSY = 8  # another run holds the node lock past the time limit
    LOCAL_STATE = 9  # the block map or audit trail is missing or damaged: recover
    INTEGRITY = 10  # stored data failed verification and no good copy exists
    UNTRUSTED = 11  # consistent, but not checked against a key the caller trusts
    DATABASE = 12  # the shared map's database (PostgreSQL) did not answer: retry later
    INTERNAL = 70  # a bug: an unexpected exception (EX_SOFTWARE)
    INTERRUPTED = 130  # Ctrl-C
    TERMINATED = 143  # SIGTERM (timeout, systemd, kill): the same clean stop as Ctrl-C


class MetanodeError(Exception):
    """Root of every error the tool raises on purpose."""

    exit_code: ExitCode = ExitCode.ERROR
    reference: str = "MN-000"

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


# -- configuration and local state -------------------------------------------


class ConfigError(MetanodeError):
    exit_code = ExitCode.NOT_INITIALISED
    reference = "MN-100"


class NotInitialised(ConfigError):
    reference = "MN-101"


class AlreadyInitialised(ConfigError):
    exit_code = ExitCode.ERROR
    reference = "MN-102"


class ConfigDamaged(ConfigError):
    reference = "MN-103"


class InvalidSetting(ConfigError):
    exit_code = ExitCode.USAGE
    reference = "MN-104"


class LocalStateError(MetanodeError):
    exit_code = ExitCode.ERROR
    reference = "MN-150"


class LocalStateLost(LocalStateError):
    """The block map or the audit trail is missing or unreadable. Never re-created in place:
    an empty map would make `gc` delete every blob and the next backup overwrite the good one."""

    exit_code = ExitCode.LOCAL_STATE
    reference = "MN-153"


class BlockMapDamaged(LocalStateLost):
    reference = "MN-151"


class AuditTrailDamaged(LocalStateLost):
    reference = "MN-154"


class MapDatabaseUnavailable(LocalStateError):
    """The PostgreSQL server holding a shared node's map, trail and locks did not answer.
    Nothing was listed that is not durable; the same command works again once it is back."""

    exit_code = ExitCode.DATABASE
    reference = "MN-156"


class ServiceError(LocalStateError):
    """The service could not start (port in use, bad address)."""

    reference = "MN-160"


class NodeBusy(LocalStateError):
    exit_code = ExitCode.BUSY
    reference = "MN-152"


class LeaseLost(NodeBusy):
    """This run's QLOCK lease was broken or taken over while it worked."""

    reference = "MN-155"


# -- keys and secrets --------------------------------------------------------


class KeystoreError(MetanodeError):
    exit_code = ExitCode.KEYSTORE
    reference = "MN-200"


class WrongPassphrase(KeystoreError):
    reference = "MN-201"


class KeystoreDamaged(KeystoreError):
    reference = "MN-202"


class PassphraseUnavailable(KeystoreError):
    reference = "MN-203"


# -- providers -----------------------------------------------------------------


class ProviderError(MetanodeError):
    """A provider failed. Carries the provider's configured name, never a credential."""

    exit_code = ExitCode.PROVIDER
    reference = "MN-300"

    def __init__(self, provider: str, message: str, hint: str = "") -> None:
        super().__init__(f"provider '{provider}': {message}", hint)
        self.provider = provider


class ObjectNotFound(ProviderError):
    reference = "MN-301"


class ProviderUnavailable(ProviderError):
    reference = "MN-302"


class PermissionDenied(ProviderError):
    reference = "MN-303"


class QuotaExceeded(ProviderError):
    reference = "MN-304"


class NotEnoughProviders(ProviderError):
    """Too few providers took the writes: about the set of providers, not one of them."""

    reference = "MN-305"

    def __init__(self, message: str, hint: str = "") -> None:
        MetanodeError.__init__(self, message, hint)
        self.provider = ""


# -- data ----------------------------------------------------------------------


class BlockNotFound(MetanodeError):
    exit_code = ExitCode.NOT_FOUND
    reference = "MN-400"


class AmbiguousBlockId(MetanodeError):
    exit_code = ExitCode.USAGE
    reference = "MN-402"


class InputError(MetanodeError):
    exit_code = ExitCode.INPUT
    reference = "MN-401"


class IntegrityError(MetanodeError):
    """Stored bytes failed verification (AEAD, chunk hash, object hash or signature)."""

    exit_code = ExitCode.INTEGRITY
    reference = "MN-500"


class SignatureInvalid(IntegrityError):
    reference = "MN-502"
