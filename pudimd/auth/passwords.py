"""Password hashes: argon2id (argon2-cffi), verified off the event loop."""

from __future__ import annotations

import anyio

__all__ = ["DUMMY_HASH", "hash_password", "verify_password", "verify_password_sync"]


def hash_password(password: str) -> str:
    """The encoded argon2id hash of ``password`` (blocking: tens of milliseconds)."""
    from argon2 import PasswordHasher

    return PasswordHasher().hash(password)


def verify_password_sync(encoded: str, password: str) -> bool:
    """Whether ``password`` matches ``encoded`` (argon2, or bcrypt when installed)."""
    if encoded.startswith("$2"):
        try:
            import bcrypt  # type: ignore[import-not-found]
        except ImportError:
            return False
        return bool(bcrypt.checkpw(password.encode(), encoded.encode()))
    from argon2 import PasswordHasher
    from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

    try:
        return PasswordHasher().verify(encoded, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def verify_password(encoded: str, password: str) -> bool:
    """:func:`verify_password_sync` in a worker thread."""
    return await anyio.to_thread.run_sync(verify_password_sync, encoded, password)


DUMMY_HASH = (
    "$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHRzb21lc2FsdA$"
    "bRMGG1+lnMHVZQuhOM2XHUAz1Fq1rALXGZq8WfnwVIs"
)
"""Verified against when the user does not exist, so unknown names take as long."""
