"""The `mlp_regression` model kind: the smallest complete example, and the template for a new one.

- `config.py`: the config dataclass and the `Trainable` declaration (no torch import);
- `module.py`: the LightningModule (torch at the top).
"""
