"""The package's import directions (docs/architecture.md): read from the source, nothing is imported.

Every ``import`` counts, at module level or inside a function: a lazy import still ties two modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ser_dist"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """The ser_dist modules ``path`` imports (``from .x import y`` resolves to ``x`` or ``x.y`` when that is a module)."""
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return {name for name in found if name in MODULES and name != here}


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}
GRAPH = {name: imported_modules(path) for name, path in MODULES.items()}


def within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


PURE_MAY_IMPORT = ("ser_dist", "ser_dist.errors", "ser_dist.config", "ser_dist.registry")

# The training side: the loop and what only it uses. Neither data nor models may reach it.
TRAINING = ("ser_dist.trainer", "ser_dist.optim", "ser_dist.checkpoint", "ser_dist.runtime", "ser_dist.scoring", "ser_dist.crossval")

# (who, may not import, why). A prefix names a module and everything under it.
RULES = [
    (("ser_dist.data",), ("ser_dist.models", "ser_dist.serving", *TRAINING), "data knows no model and no training"),
    (("ser_dist.models",), ("ser_dist.data", "ser_dist.serving", *TRAINING), "models know no data loading and no training"),
    (("ser_dist.serving",), ("ser_dist.trainer", "ser_dist.optim", "ser_dist.crossval"), "serving never imports the training loop"),
    # A loss reads its settings (config.Loss) and is found by name (the registry's table); nothing else.
    (("ser_dist.losses", "ser_dist.metrics"), tuple(n for n in MODULES if n not in PURE_MAY_IMPORT), "losses and metrics are pure"),
    (
        ("ser_dist.config", "ser_dist.overrides", "ser_dist.registry"),
        ("ser_dist.data", "ser_dist.models", "ser_dist.serving", "ser_dist.losses", *TRAINING),
        "config and the registry tables import no component",
    ),
]


@pytest.mark.parametrize("who, forbidden, why", RULES, ids=[rule[2] for rule in RULES])
def test_import_directions(who, forbidden, why):
    broken = sorted(
        f"{source} imports {target}"
        for source, targets in GRAPH.items()
        if within(source, who)
        for target in targets
        if within(target, forbidden) and not within(target, who)
    )
    assert not broken, f"{why}: " + "; ".join(broken)


def test_no_import_cycle():
    """Tarjan's strongly connected components over every import edge; a component of two or more is a cycle."""
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in GRAPH[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(GRAPH):
        if node not in index:
            visit(node)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_modules_stay_short():
    long = {name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > 400}
    assert not long, f"modules over 400 lines (split them by concern): {long}"


def test_the_import_graph_sees_lazy_and_relative_imports():
    """Guards the checks above against passing on an empty graph: cli imports crossval inside a function."""
    assert len(MODULES) > 40 and "ser_dist.crossval" in GRAPH["ser_dist.cli"]
    assert "ser_dist.data.records" in GRAPH["ser_dist.data.manifest"]  # ``from .records import ...``


def test_the_readme_layout_names_every_module():
    """README's Layout section is the map a newcomer reads first: every module in ser_dist/ is on it."""
    readme = (ROOT / "README.md").read_text()
    layout = readme[readme.index("## Layout") :]
    missing = sorted(
        str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py") if path.name != "__init__.py" and path.name not in layout
    )
    assert not missing, f"README's Layout section does not name: {', '.join(missing)}"


BLOCKS = (ast.If, ast.For, ast.While, ast.With, ast.Try, ast.Match)


def nesting(node: ast.AST, depth: int = 0) -> int:
    """The deepest block nesting inside a function (nested functions count on their own)."""
    deepest = depth
    for child in ast.iter_child_nodes(node):
        if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            deepest = max(deepest, nesting(child, depth + isinstance(child, BLOCKS)))
    return deepest


def test_the_loop_reads_on_a_screen():
    """The training loop and what it calls: blocks nest at most 4 deep, at most 5 positional parameters."""
    found = []
    for name in (*TRAINING, "ser_dist.run_data"):
        for node in ast.walk(ast.parse(MODULES[name].read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                positional = [a.arg for a in node.args.posonlyargs + node.args.args if a.arg not in ("self", "cls")]
                if len(positional) > 5 or nesting(node) > 4:
                    found.append(f"{name}.{node.name}: {len(positional)} positional, nesting {nesting(node)}")
    assert not found, "; ".join(found)
