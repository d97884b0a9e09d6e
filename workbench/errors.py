"""Error types shared by every area.

`InputError` means the caller gave us something we cannot use (a file, a config, a CLI flag, a
model output). It is a `ValueError`, so library code and notebooks catch it as they would any bad
argument; the CLI prints its message as one line and exits with status 2. Anything else that
escapes is an internal error (status 1).
"""


class InputError(ValueError):
    """Bad input. The message must name the file, row/column or key that is wrong."""


class ConfigError(InputError):
    """A config value or key is invalid (unknown key, wrong type, out of range)."""
