"""A model kind that lives outside the workbench: named in a job config as
``kind: tests.toy_kind.line:LineFit``, with no edit to `workbench/`."""
