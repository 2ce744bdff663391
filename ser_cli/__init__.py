"""ser-cli: batch speech emotion recognition with the attention-pooling CNN of Li et al. (2018).

The public API is imported lazily so that ``import ser_cli`` (and commands such as
``ser-cli formats``) do not pay for importing torch.
"""

from __future__ import annotations

import importlib

from ser_cli.errors import AudioError, BusyError, ConfigError, CorpusError, ModelFileError, SerError

__version__ = "0.1.0"

_LAZY = {
    "analyze": "ser_cli.analysis",
    "train": "ser_cli.training",
    "evaluate": "ser_cli.evaluation",
    "scan": "ser_cli.audio",
    "load_audio": ("ser_cli.audio", "load"),
    "spectrogram": "ser_cli.features",
    "normalize": "ser_cli.features",
    "load_model": ("ser_cli.model", "load_model"),
}

__all__ = [
    "__version__",
    "SerError",
    "AudioError",
    "ConfigError",
    "CorpusError",
    "ModelFileError",
    "BusyError",
    *_LAZY,
]


def __getattr__(name: str):
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'ser_cli' has no attribute {name!r}")
    module_name, attr = target if isinstance(target, tuple) else (target, name)
    value = getattr(importlib.import_module(module_name), attr)
    globals()[name] = value
    return value
