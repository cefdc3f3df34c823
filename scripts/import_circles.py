"""The package's import circles: modules that import each other, directly or around a loop.

The one-path reshape (issue 25) must leave none. This reads every ``import`` of the package
with :mod:`ast` (at module level, under ``TYPE_CHECKING``, and inside functions), builds the
graph of module -> module imports, and prints each circle (a strongly connected component of
more than one module) with the arrows inside it and the names each arrow takes, marking the
imports made inside a function (often placed there to dodge the circle at import time).

    python scripts/import_circles.py          # exit 1 if there is a circle
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from pathlib import Path


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module an ``ImportFrom`` names."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def graph(package: Path) -> dict[tuple[str, str], list[tuple[str, bool]]]:
    """(importer, imported) -> [(name, inside a function)], modules of the package only."""
    root = package.parent
    modules = {_module_name(p, root): p for p in package.rglob("*.py")}
    arrows: dict[tuple[str, str], list[tuple[str, bool]]] = defaultdict(list)
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        parents = {c: n for n in ast.walk(tree) for c in ast.iter_child_nodes(n)}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            inside, up = False, parents.get(node)
            while up is not None:
                inside = inside or isinstance(up, ast.FunctionDef | ast.AsyncFunctionDef)
                up = parents.get(up)
            if isinstance(node, ast.Import):
                targets = [(alias.name, alias.name) for alias in node.names]
            else:
                base = _resolve(name, path.name == "__init__.py", node)
                targets = []
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.append((sub, alias.name) if sub in modules else (base, alias.name))
            for target, taken in targets:
                if target in modules and target != name:
                    arrows[(name, target)].append((taken, inside))
    return arrows


def circles(arrows: dict[tuple[str, str], list[tuple[str, bool]]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), sorted."""
    following: dict[str, list[str]] = defaultdict(list)
    for a, b in arrows:
        following[a].append(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in following[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted({m for arrow in arrows for m in arrow}):
        if v not in index:
            visit(v)
    return sorted(found)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package", nargs="?", default="persevere", type=Path)
    args = parser.parse_args(argv)
    sys.setrecursionlimit(10_000)
    arrows = graph(args.package)
    found = circles(arrows)
    print(f"{len(found)} circle(s) among {len({m for a in arrows for m in a})} modules")
    for number, members in enumerate(found, 1):
        print(f"circle {number}: {', '.join(members)}")
        for (a, b), names in sorted(arrows.items()):
            if a in members and b in members:
                taken = ", ".join(
                    f"{n}{' (in a function)' if inside else ''}" for n, inside in names
                )
                print(f"  {a} -> {b}: {taken}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
