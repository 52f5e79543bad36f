"""The import graph of pdgen_core runs down: no module imports one that imports it back, directly
or around a loop (issue 18: ``joins`` imported the pipeline, which imported ``joins``).

Built with ``ast`` from every ``import`` of a pdgen_core module, at module top or inside a
function (a lazy import still ties the two into one unit of change), so the test needs no import
side effects.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "pdgen_core"


def modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        parts = list(p.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _owner(name: str, mods: dict[str, Path]) -> str | None:
    """The module that ``name`` (a module or a name inside one) belongs to."""
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def _targets(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        return [f"{node.module}.{a.name}" for a in node.names]
    return []


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            for t in _targets(node):
                dep = _owner(t, mods) if t.startswith("pdgen_core.") else None
                if dep and dep != m:
                    graph[m].add(dep)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_among_pdgen_modules():
    assert cycles(import_graph()) == []


def test_the_cycle_check_finds_a_loop():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _imports_of(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_only_the_cli_package_imports_typer():
    """One CLI package: library modules (versions, jobs_api, audit, ...) have no Typer in them."""
    offenders = sorted(m for m, p in modules().items()
                       if not m.startswith("pdgen_core.cli") and "typer" in _imports_of(p))
    assert offenders == []


def test_cli_help_imports_no_engine_or_cluster():
    """``pdgen --help`` stays fast: importing the CLI loads neither Ray nor vLLM nor torch."""
    import subprocess
    import sys

    code = ("import sys, pdgen_core.cli; "
            "print(sorted(m for m in ('ray', 'vllm', 'torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={**__import__("os").environ, "PYTHONPATH": str(ROOT)}, check=True)
    assert out.stdout.strip() == "[]", out.stderr


def test_the_readme_file_tree_matches_the_package():
    """README's Files block names every module of pdgen_core (folders with a line of their own
    stand for their modules) and nothing that is not there."""
    import re

    text = (ROOT / "README.md").read_text()
    block = text.split("## Files", 1)[1].split("```", 2)[1]
    listed = set(re.findall(r"^(pdgen_core/\S+)", block, re.M))
    for entry in listed:
        assert (ROOT / entry.rstrip("/")).exists(), f"README names {entry}, which is not there"
    folders = {e for e in listed if e.endswith("/")}
    for p in sorted(PKG.rglob("*.py")):
        rel = p.relative_to(ROOT).as_posix()
        if p.name.startswith("__") or any(rel.startswith(f) for f in folders):
            continue
        assert rel in listed, f"README's file tree lacks {rel}"
