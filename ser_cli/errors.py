"""The exception family of ser-cli.

Every error a user can cause derives from :class:`SerError`. Messages lead with the file (when
there is one), then the reason, then what was found versus what was expected, e.g.
``"clip.wav: sample rate 0 Hz is not positive"``. Batch commands record a ``SerError`` for one
file in the report and carry on; any other exception is a bug and propagates.
"""

from __future__ import annotations

__all__ = ["SerError", "AudioError", "ConfigError", "ModelFileError", "CorpusError", "BusyError"]


class SerError(Exception):
    """Root of every error ser-cli raises on purpose."""


class AudioError(SerError, RuntimeError):
    """An audio file cannot be decoded, or its samples are unusable (names the file)."""


class ConfigError(SerError, ValueError):
    """A setting is out of range or inconsistent (names the field and the value)."""


class ModelFileError(SerError, RuntimeError):
    """A model file is missing, corrupt, foreign, or inconsistent with its settings."""


class CorpusError(SerError, ValueError):
    """A corpus or manifest is malformed: unknown label, missing speaker, no files."""


class BusyError(SerError, RuntimeError):
    """A work folder is in use by another process (names the folder and the holder)."""
