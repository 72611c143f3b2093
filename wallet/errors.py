"""Errors of rill.wallet: what the user asked cannot be done, and why."""

from __future__ import annotations


class WalletError(Exception):
    """Base class; ``code`` is a short machine-readable reason."""

    code = "wallet"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class HomeError(WalletError):
    """The home directory is missing, unreadable, or already initialised."""

    code = "home"


class NotFound(WalletError):
    """An object or record the user named does not exist."""

    code = "not-found"


class Refused(WalletError):
    """The request breaks a rule (a click in a settled month, a second settlement...)."""

    code = "refused"


class Corrupt(WalletError):
    """The store was damaged or tampered with: the chain or a signature does not verify."""

    code = "corrupt"


class DiskFull(WalletError):
    """The disk holding the home (or a file being written) has no room left: the write
    was undone, nothing was recorded half-way.  ``path`` is what was being written to,
    ``free`` the bytes left on its file system (None when unknown)."""

    code = "disk-full"

    def __init__(self, message: str, *, path: str = "", free: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.free = free
