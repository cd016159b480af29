"""The package is cut along the data flow: each module imports only modules of its own or an earlier stage.

sample -> prompt -> rollout -> reward -> advantage -> loss -> step, then the applications around the loop
(ARCHITECTURE.md). Imports inside functions count too: a lazy import of a later stage is still a cycle in the
design. Also checked here: no module over 600 lines and no function over 60 lines (docstring excluded).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "timegrpo"

#: Stages in data-flow order; a module may import from its own stage or any earlier one. The first match wins.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("leaves", ("timegrpo", "timegrpo.errors", "timegrpo.registry", "timegrpo.spans", "timegrpo.parsing", "timegrpo.config")),
    ("data", ("timegrpo.data",)),
    ("prompts", ("timegrpo.prompts",)),
    ("models", ("timegrpo.models",)),
    ("rollout", ("timegrpo.rollout",)),
    ("rewards", ("timegrpo.rewards", "timegrpo.metrics")),
    ("algos", ("timegrpo.algos",)),
    ("evaluate", ("timegrpo.evaluate",)),
    ("trainer", ("timegrpo.trainer",)),
    ("hub", ("timegrpo.hub",)),
    ("apps", ("timegrpo.bench", "timegrpo.demo", "timegrpo.demo_videotg", "timegrpo.demo_opd", "timegrpo.detr",
              "timegrpo.curriculum", "timegrpo.report")),
    ("cli", ("timegrpo.cli", "timegrpo.train")),
]

MAX_FILE_LINES = 600
MAX_FUNCTION_LINES = 60


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> int:
    best, rank = -1, None
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            inside = module == prefix or (prefix != "timegrpo" and module.startswith(prefix + "."))
            if inside and len(prefix) > best:
                best, rank = len(prefix), i
    if rank is None:
        raise AssertionError(f"{module} is in no layer of tests/test_layers.py: add it to LAYERS")
    return rank


def imported_modules(tree: ast.AST, package: str) -> set[str]:
    """Every ``timegrpo...`` module a file imports (``from timegrpo.x import y`` counts ``timegrpo.x.y`` when
    ``y`` is a module, which the caller cannot tell: ``timegrpo.x`` is what is checked)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "timegrpo"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            if name.split(".")[0] != "timegrpo":
                continue
            if name == "timegrpo":  # `from timegrpo import prompts`: the submodules themselves
                out |= {f"timegrpo.{a.name}" for a in node.names if a.name != "__version__"}
            else:
                out.add(name)
    return out


SOURCES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_follow_the_data_flow(path):
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    mine = layer_of(name)
    later = sorted(m for m in imported_modules(ast.parse(path.read_text()), package) if layer_of(m) > mine)
    assert not later, (f"{name} (stage {LAYERS[mine][0]}) imports later stages: "
                       + ", ".join(f"{m} ({LAYERS[layer_of(m)][0]})" for m in later))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_and_functions_stay_small(path):
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_FILE_LINES, f"{path.name}: {len(text.splitlines())} lines"
    long = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
                body = body[1:]  # the docstring does not count
            if body:
                n = body[-1].end_lineno - body[0].lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{node.name} ({n} lines)")
    assert not long, f"{path.name}: functions over {MAX_FUNCTION_LINES} lines: {', '.join(long)}"


def test_layers_name_real_modules():
    """Every prefix in LAYERS that exists is a module or package here (a rename must update this file)."""
    names = {module_name(p) for p in SOURCES}
    for _, prefixes in LAYERS:
        for prefix in prefixes:
            assert any(n == prefix or n.startswith(prefix + ".") for n in names), prefix
