"""`workbench run`: one job or sweep member in the foreground (see cli.py)."""
