"""Errors meant for people: each carries the exit code the CLI returns.

Raise these (not bare ValueError) for anything a user can fix: the message must say
what was wrong, where (file, field, op) and what to do.
"""


class EdgevitError(Exception):
    """Base of all user-facing errors; `exit_code` is what the CLI exits with."""

    exit_code = 1


class UserInputError(EdgevitError):
    """Bad input from the user: a file, a field, an option. Exit code 2."""

    exit_code = 2


class ProfileError(UserInputError):
    """A device profile that does not exist or does not validate."""


class SpecError(UserInputError):
    """A ViTSpec that is malformed or inconsistent."""


class CheckpointError(UserInputError):
    """A checkpoint that cannot be read or does not match its spec."""


class DataError(UserInputError):
    """A dataset that is missing or malformed."""


class InfeasibleError(EdgevitError):
    """No solution fits the requested budget. Exit code 3."""

    exit_code = 3
