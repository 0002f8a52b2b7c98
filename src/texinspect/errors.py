"""Errors that carry a message meant for the person at the terminal (or the HTTP client)."""


class TexinspectError(Exception):
    """Base class: the CLI prints ``error: <message>`` and exits 2 instead of a traceback."""


class ConfigError(TexinspectError):
    """A config key is unknown, has the wrong type, or a config file is unreadable."""


class DataError(TexinspectError):
    """A dataset folder, image or mask is missing, unreadable or inconsistent (names the file)."""


class ModelError(TexinspectError):
    """A model artifact is missing, of an unknown family, or does not match the code."""


class WeightsUnavailableError(TexinspectError):
    """Pretrained weights (e.g. VGG-16 for the perceptual loss) are not on this machine."""


class CheckpointError(TexinspectError):
    """A training checkpoint cannot be read (truncated, corrupt, not ours); the message says what to do."""


class OutputError(TexinspectError):
    """An output file or folder cannot be written (read-only, a file where a folder is needed, disk full)."""
