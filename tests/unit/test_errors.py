"""The exit-code table is a public contract (README): pin it."""

from __future__ import annotations

import pytest

from metanode_storage import errors
from metanode_storage.errors import ExitCode


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.NotInitialised("x"), 3),
        (errors.ConfigDamaged("x"), 3),
        (errors.InvalidSetting("x"), 2),
        (errors.WrongPassphrase("x"), 4),
        (errors.KeystoreDamaged("x"), 4),
        (errors.PassphraseUnavailable("x"), 4),
        (errors.BlockNotFound("x"), 5),
        (errors.ProviderUnavailable("p", "x"), 6),
        (errors.QuotaExceeded("p", "x"), 6),
        (errors.NotEnoughProviders("x"), 6),
        (errors.InputError("x"), 7),
        (errors.NodeBusy("x"), 8),
        (errors.IntegrityError("x"), 10),
        (errors.SignatureInvalid("x"), 10),
        (errors.BlockMapDamaged("x"), 9),
        (errors.AuditTrailDamaged("x"), 9),
        (errors.LocalStateLost("x"), 9),
    ],
)
def test_each_error_owns_its_exit_code(error: errors.MetanodeError, code: int) -> None:
    assert error.exit_code == code


def test_exit_code_values_are_stable() -> None:
    assert {c.name: int(c) for c in ExitCode} == {
        "OK": 0,
        "ERROR": 1,
        "USAGE": 2,
        "NOT_INITIALISED": 3,
        "KEYSTORE": 4,
        "NOT_FOUND": 5,
        "PROVIDER": 6,
        "INPUT": 7,
        "BUSY": 8,
        "LOCAL_STATE": 9,
        "INTEGRITY": 10,
        "UNTRUSTED": 11,
        "DATABASE": 12,
        "INTERNAL": 70,
        "INTERRUPTED": 130,
        "TERMINATED": 143,
    }


def test_references_are_unique() -> None:
    classes = [
        c
        for c in vars(errors).values()
        if isinstance(c, type) and issubclass(c, errors.MetanodeError)
    ]
    references = [c.reference for c in classes]
    assert len(references) == len(set(references))


def test_message_carries_hint() -> None:
    error = errors.BlockNotFound("no block 'x'", "run ls")
    assert str(error) == "no block 'x' (run ls)"
