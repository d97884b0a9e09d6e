"""Error types shared by every area.

`InputError` means the user gave us something we cannot use (a file, a config, a CLI flag, a
model output). The CLI prints its message as one line and exits with status 2; anything else
that escapes is an internal error (status 1).
"""


class InputError(Exception):
    """Bad user input. The message must name the file, row/column or key that is wrong."""


class ConfigError(InputError):
    """A config value or key is invalid (unknown key, wrong type, out of range)."""
