"""Ember's exception hierarchy; the native module raises these (one class per core error kind)."""

from __future__ import annotations

__all__ = [
    "CapacityError",
    "EmberError",
    "InvalidInputError",
    "ModelLoadError",
    "ModelNotFoundError",
    "StoreError",
    "UnsupportedModelError",
]


class EmberError(Exception):
    """Base class of every error Ember raises; the message is the Rust core's text."""

    def __str__(self) -> str:
        # KeyError quotes its message; Ember's messages read better as written.
        return Exception.__str__(self)


class ModelNotFoundError(EmberError, KeyError):
    """The id is neither a catalog entry, an alias nor a model directory."""


class ModelLoadError(EmberError):
    """The model is known but its files could not be found, read or loaded."""


class UnsupportedModelError(ModelLoadError):
    """The model's architecture is in the catalog but Ember has no encoder for it yet."""


class InvalidInputError(EmberError, ValueError):
    """An input or option is invalid (not a string, unknown prompt_name, bad dimensions...)."""


class CapacityError(EmberError):
    """A limit (memory budget, queue length) stops the request; retrying later may work."""


class StoreError(EmberError):
    """An index target (SQLite file, Postgres, Parquet directory) cannot be opened or written:
    unreachable, locked, or missing an extension. Nothing of the failed batch was written."""
