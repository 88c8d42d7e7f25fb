"""Users' credentials: password hashes, client ids, and emails as ids."""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher
from email_validator import EmailNotValidError, validate_email

from .errors import InvalidObject

# argon2id with the library's defaults (RFC 9106's low-memory profile).
_HASHER = PasswordHasher()

MAX_PASSWORD_LENGTH = 1024


def hash_password(password: str) -> str:
    """A salted argon2id hash in modular crypt form ($argon2id$v=19$...)."""
    return _HASHER.hash(password)


def new_client_id() -> str:
    """A client id credential: 192 random bits, URL-safe base64 (32 chars)."""
    return secrets.token_urlsafe(24)


def normalized_email(address: str, path: str = "$.email") -> str:
    """The address, checked as an email and lowered: one spelling per user."""
    try:
        checked = validate_email(
            address, check_deliverability=False, allow_smtputf8=False
        )
    except EmailNotValidError as error:
        raise InvalidObject([(path, f"not a valid email address: {error}")]) from None
    return checked.normalized.lower()
