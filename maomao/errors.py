"""The exception hierarchy; each class carries the exit code ``ctl`` reports.

Exit codes follow the project's contract: 2 for anything the user can fix by
changing what they typed or wrote (bad input, a missing or existing name, a
bad config file), 1 for the world being unavailable (the store is down).
"""

from __future__ import annotations


class MaomaoError(Exception):
    """Base of every error maomao reports to a user as one line."""

    exit_code = 1


class UsageError(MaomaoError):
    """Input that can never work: fix the command line or the file."""

    exit_code = 2


class ConfigError(UsageError):
    """A configuration value that is missing, malformed or out of range."""


class ValidationError(UsageError):
    """A record field (name, image, URL, env pair, ...) that is not allowed."""


class NotFound(UsageError):
    """The named record does not exist."""


class AlreadyExists(UsageError):
    """A record with that name exists and ``--replace`` was not given."""


class StoreUnavailable(MaomaoError):
    """The store did not answer; the message names the endpoint(s)."""

    exit_code = 1


class StoreError(MaomaoError):
    """The store answered, with an error (a request it refused, a server fault)."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


class ConditionFailed(MaomaoError):
    """A conditional write found another revision than the one it expected."""


class LeaseExpired(MaomaoError):
    """A lease was refreshed or used after the store had expired it."""


class Compacted(MaomaoError):
    """A watch asked for revisions the store has already compacted away."""

    def __init__(self, requested: int, compact_revision: int) -> None:
        super().__init__(
            f"revision {requested} is compacted; the oldest kept is {compact_revision}"
        )
        self.requested = requested
        self.compact_revision = compact_revision
