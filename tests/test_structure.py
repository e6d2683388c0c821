"""The code's shape, checked: no import cycle in the project, no function longer than 60 lines in rnn_core/ or
search/, rnn_core free of Ray, Optuna and W&B, a README that is a landing page. No Ray."""

from __future__ import annotations

import ast

from tests.conftest import ROOT

PACKAGES = ("rnn_core", "search")
MAX_FUNCTION_LINES = 60
MAX_README_LINES = 150


def _modules() -> dict[str, ast.Module]:
    """Every module of the packages, subpackages included (rnn_core/datasets/__init__.py is rnn_core.datasets)."""
    out = {}
    for pkg in PACKAGES:
        for p in sorted((ROOT / pkg).rglob("*.py")):
            parts = p.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 2 else parts)
            out[name] = ast.parse(p.read_text(), str(p))
    return out


def _imports(tree: ast.Module) -> set[str]:
    """Every module this one imports, at the top or inside a function (a lazy import is still a dependency)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}  # `from search import storage`
    return out


def test_no_import_cycle_in_the_project() -> None:
    mods = _modules()
    graph = {m: sorted(i for i in _imports(t) if i in mods and i != m) for m, t in mods.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in graph[m]:
            assert state.get(n) != 1, "import cycle: " + " -> ".join(path[path.index(n):] + [n]) if n in path else n
            if n not in state:
                visit(n, path + [n])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [m])


def test_no_function_is_longer_than_a_screen() -> None:
    long = [f"{m}.{n.name}: {n.end_lineno - n.lineno + 1} lines" for m, t in _modules().items() for n in ast.walk(t)
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, long


def test_rnn_core_never_imports_ray_optuna_or_wandb() -> None:
    found = [(m, i) for m, t in _modules().items() if m.startswith("rnn_core.") for i in _imports(t)
             if i.split(".")[0] in ("ray", "optuna", "wandb", "search")]
    assert not found, found


def test_the_readme_is_a_landing_page() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines; the reference belongs in docs/"
    for link in [w.split("](")[1].split(")")[0] for w in " ".join(lines).split() if "](" in w and "://" not in w]:
        assert (ROOT / link.split("#")[0]).exists(), f"README links to {link}, which does not exist"


def test_no_module_but_its_definition_knows_which_data_set_it_has() -> None:
    """One pipeline for every series: only rnn_core/datasets/bikes.py names the bikes data, its target, its years or
    its city; no module branches on a 'builtin' data set."""
    import re

    pattern = re.compile(r"\bcnt\b|\bbikes?\b|2012|washington|builtin", re.I)
    found = [f"{p.relative_to(ROOT)}:{i}: {line.strip()}" for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))
             if p != ROOT / "rnn_core" / "datasets" / "bikes.py"
             for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not found, "\n".join(found)


def test_the_cli_parses_and_prints_and_results_show_what_holds_now() -> None:
    assert len((ROOT / "search" / "cli.py").read_text().splitlines()) <= 450
    assert len((ROOT / "benchmarks" / "RESULTS.md").read_text().splitlines()) <= 250
