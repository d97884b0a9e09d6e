"""The import rules of the house, checked by parsing every module's imports (module- and function-level).

- The foundation (errors, atomic, locks, config, store, jobspec, areas, registry, train, callbacks, batches)
  imports only the foundation.
- Domain code (workbench.lm, workbench.generative, workbench.mlp, operators, operators.prose,
  scaling, scaling.medida) imports the foundation and its own area. The cross-edges allowed:
  PROSE uses the ODE families and their batched solver, MEDIDA uses the KS solvers. So law fitting
  imports no model, and no domain module imports `jobs/`.
- `jobs/` (submit, sweep, entrypoints) imports the foundation and itself: it reaches models only
  through the registry.
- Only the app shell ties areas together: workbench.cli, workbench.bench, workbench.demo, the
  experiment runner (jobs.experiment) and each area's front-end (its `cli.py` and `bench.py`).
- No import cycles.

The checker is shown to catch a planted violation and a planted cycle in a copy of the tree.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("workbench", "operators", "scaling", "jobs")
# "workbench" itself is its __init__: the package docstring and __version__.
FOUNDATION = {"workbench"} | {
    f"workbench.{name}"
    for name in (
        "errors",
        "atomic",
        "locks",
        "config",
        "store",
        "jobspec",
        "areas",
        "registry",
        "train",
        "callbacks",
        "interrupts",
        "batches",
        "provenance",
        "figures",
    )  # fmt: skip
}
SHELL = {
    "workbench.cli",
    "workbench.bench",
    "workbench.bench_gpu",
    "workbench.demo",
    "workbench.demo_isoflop",
    "workbench.completion",
    "jobs.experiment",
}
# Domain areas by package prefix, longest first wins.
AREAS = {
    "workbench.lm": "lm",
    "workbench.generative": "generative",
    "workbench.mlp": "mlp",
    "operators.prose": "prose",
    "operators": "operators",
    "scaling.medida": "medida",
    "scaling": "laws",
}
ALLOWED_CROSS = {("prose", "operators.odes"), ("prose", "operators.batched_solve"), ("medida", "operators.ks")}


def modules(root: Path) -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Project modules that `name` imports anywhere in its file."""

    def resolve(target: str) -> str | None:
        while target and target not in known:
            target = target.rpartition(".")[0]
        return target or None

    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            module = resolve(target)
            if module is not None and module != name:
                found.add(module)
                break  # `from a.b import c, d`: one edge, to the most specific module
    return found


def layer(name: str) -> str:
    if name in FOUNDATION:
        return "foundation"
    if name in SHELL or name.rpartition(".")[2] in ("cli", "bench"):
        return "shell"
    if name.startswith("jobs"):
        return "jobs"
    return "domain"


def area(name: str) -> str:
    return next(
        AREAS[prefix]
        for prefix in sorted(AREAS, key=len, reverse=True)
        if name == prefix or name.startswith(prefix + ".")
    )


def violations(root: Path) -> list[str]:
    known = modules(root)
    graph = {name: imports(name, path, known) for name, path in known.items()}
    problems = []
    for name, targets in sorted(graph.items()):
        for target in sorted(targets):
            source_layer, target_layer = layer(name), layer(target)
            if source_layer == "foundation" and target_layer != "foundation":
                problems.append(f"{name} -> {target}: the foundation imports only the foundation")
            elif source_layer == "jobs" and target_layer not in ("foundation", "jobs"):
                problems.append(f"{name} -> {target}: jobs/ reaches models only through the registry")
            elif source_layer == "domain" and target_layer in ("jobs", "shell"):
                problems.append(f"{name} -> {target}: domain code never imports jobs/ or the app shell")
            elif (
                source_layer == "domain"
                and target_layer == "domain"
                and area(name) != area(target)
                and (area(name), target) not in ALLOWED_CROSS
            ):
                problems.append(f"{name} -> {target}: {area(name)} may not import {area(target)}")
    problems += [f"import cycle: {' -> '.join(cycle)}" for cycle in cycles(graph)]
    return problems


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component) + [sorted(component)[0]])

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_tree_follows_the_import_rules():
    assert violations(ROOT) == []


def test_every_module_has_a_layer_and_an_area():
    for name in modules(ROOT):
        if layer(name) == "domain":
            area(name)  # raises StopIteration for a module outside every area


def _copy(tmp_path: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def _plant(path: Path, line: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + f"\n\ndef _planted():\n    {line}\n", encoding="utf-8")


def test_a_planted_forbidden_import_is_caught(tmp_path):
    copy = _copy(tmp_path)
    _plant(copy / "workbench" / "store.py", "from workbench.lm.model import GPT  # the foundation reaching an area")
    _plant(copy / "scaling" / "fit.py", "import operators.odes  # law fitting importing a model")
    _plant(copy / "operators" / "prose" / "dataset.py", "from jobs.sweep import run_array  # domain importing jobs/")
    found = violations(copy)
    assert any(p.startswith("workbench.store -> workbench.lm.model") for p in found), found
    assert any(p.startswith("scaling.fit -> operators.odes") for p in found), found
    assert any(p.startswith("operators.prose.dataset -> jobs.sweep") for p in found), found


def test_a_planted_cycle_is_caught(tmp_path):
    copy = _copy(tmp_path)
    _plant(copy / "workbench" / "config.py", "from workbench import store  # store imports config")
    found = violations(copy)
    assert any(p.startswith("import cycle:") and "workbench.config" in p and "workbench.store" in p for p in found), (
        found
    )
