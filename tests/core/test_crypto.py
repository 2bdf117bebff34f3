"""Secrets at rest: encrypted with the newest key, readable with any listed key, rotatable."""

import pytest
from cryptography.fernet import Fernet

from apps.core import crypto


def test_round_trip_and_ciphertext_hides_the_secret(settings):
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    stored = crypto.encrypt("sk-very-secret")
    assert "sk-very-secret" not in stored
    assert crypto.decrypt(stored) == "sk-very-secret"


def test_rotation_keeps_old_values_readable_and_moves_them_to_the_new_key(settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [old]
    stored = crypto.encrypt("value")
    settings.FIELD_ENCRYPTION_KEYS = [new, old]
    assert crypto.decrypt(stored) == "value"
    rotated = crypto.rotate(stored)
    settings.FIELD_ENCRYPTION_KEYS = [new]
    assert crypto.decrypt(rotated) == "value"
    with pytest.raises(ValueError, match="no configured key"):
        crypto.decrypt(stored)


def test_a_value_that_was_never_encrypted_is_refused():
    with pytest.raises(ValueError, match="not an encrypted value"):
        crypto.decrypt("plain text")
