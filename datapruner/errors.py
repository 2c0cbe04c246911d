"""The one error type a user can cause: the fronts print it as one line (CLI: exit 2); anything else is a bug."""

from __future__ import annotations


class DataprunerError(ValueError):
    """A problem with the user's input, options or run directory, with what to do about it.

    It subclasses ValueError so callers that guard bad values keep working; the CLI catches only this
    type, so an internal ValueError still shows as the bug it is.
    """


class OutputError(DataprunerError):
    """A file of the run cannot be written (disk full, quota, read-only): nothing half-written is kept."""


class RunInUse(DataprunerError):
    """Another live process holds the run directory's lock."""
