"""Errors that the command line shows as one clear line instead of a traceback."""

from __future__ import annotations


class RecsysError(Exception):
    """Base class for every error meant for a person: the message says what and where."""


class DataError(RecsysError):
    """Input data is missing, unreadable or invalid (message names file, line and field)."""


class ConfigError(RecsysError):
    """A configuration value is unknown or invalid (message names the key and the allowed values)."""


class ModelError(RecsysError):
    """A model was used wrongly: not fitted, wrong matrix shape, index out of range, bad n."""


class StoreError(RecsysError):
    """Redis is unreachable or holds no data of the expected shape."""
