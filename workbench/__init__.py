"""The workbench's foundation (errors, atomic writes, configs, the store, job specs, the registry of
model kinds, the training harness and its batch stream), its app shell (`workbench` CLI, benchmarks,
demo) and the model areas that live under it: `lm/`, `generative/` and the template `mlp/`."""

__version__ = "0.2.0"
