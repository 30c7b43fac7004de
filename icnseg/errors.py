"""The one exception family of icnseg: every error a user can cause is an IcnsegError."""

from __future__ import annotations


class IcnsegError(Exception):
    """Base of every error icnseg raises on purpose; the CLI prints it as one line."""


class InputError(IcnsegError):
    """A user-supplied file or value is missing, unreadable or malformed."""


class DataError(InputError):
    """A dataset file (image, annotation, mask, class list) is bad; the message names it."""


class CheckpointError(InputError):
    """A checkpoint is missing, truncated, of another architecture or not loadable safely."""


class ConfigError(IcnsegError):
    """An option or combination of options is invalid."""


class ExportError(IcnsegError):
    """A model cannot be exported (e.g. an op with no explicit-gradient rule)."""


class BackendUnavailable(IcnsegError):
    """An optional backend or dependency is not installed; the message says which extra."""


class OutputError(IcnsegError):
    """An output location cannot be written, or would overwrite something the user has."""
