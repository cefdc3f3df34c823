"""How far one upload request travels as loose keywords, and where "file or stream" is decided.

For each field of an upload request (what the user asked for: destination, source, part size
or schedule, part limit, checksum, object options, write-once, expected size, transfer
options...), the functions of the package that take it as a parameter, and the places where a
path is compared with ``"-"`` (standard input): the measure of the one-path reshape (issue 25),
whose goal is at most 3 functions per field and one place for the ``"-"`` test.

A field is known by the parameter names that carry it (``--aliases`` prints them); every
``def``, ``async def`` and ``lambda`` counts, methods included ("by name": the figure the
issue quotes). Two more columns: "homonyms", parameters of the same name that are not the
request's (a part's own checksum, a ListParts page limit; listed in :data:`HOMONYMS` with
what they are), and "passed on", the functions that hand the parameter unchanged to another
call (they carry it without using it: what a request value removes). A "-" comparison is an
``==``/``!=``/``in`` whose other side is the string ``"-"`` (or a name bound to it at module
level, such as ``STREAM = "-"``). Read with :mod:`ast`, never with regular expressions.

    python scripts/request_params.py            # a table
    python scripts/request_params.py --where    # and every function, file:line
    python scripts/request_params.py --json
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

# A request field -> the parameter names that carry it through the package today.
FIELDS: dict[str, tuple[str, ...]] = {
    "max_parts": ("max_parts",),
    "part_size": ("part_size",),
    "checksum": ("checksum",),
    "no_overwrite": ("no_overwrite",),
    "object_options": ("object_options",),
    "request_payer": ("request_payer",),
    "expected_size": ("expected_size",),
    "stream_schedule": ("schedule", "stream_every"),
    "source_path": ("file", "file_arg", "file_path", "file_to_upload"),
    "state_file": ("state_file", "state_path"),
    "destination": ("bucket", "key"),
    "endpoint": ("endpoint", "overrides", "endpoint_flags"),
    "transfer_options": ("options", "transfer"),
    "verify_parts": ("verify_parts",),
    "shards": ("shards", "processes"),
}


# Parameters named like a request field that carry something else: (function, parameter).
HOMONYMS: dict[tuple[str, str], str] = {
    ("MultipartSession.list_parts", "max_parts"): "a ListParts page limit",
    ("MultipartSession.upload_part", "checksum"): "one part's checksum",
    ("SourceFile.still_reads", "checksum"): "one part's checksum",
    ("StreamParts._already_there", "checksum"): "one part's checksum",
    ("holds", "checksum"): "one part's checksum",
    ("object_matches", "checksum"): "the object's stored checksum",
    ("FileDone.of", "checksum"): "a tree file's object checksum, as recorded",
    ("per_request", "options"): "object options, not transfer options",
}


@dataclass
class Found:
    functions: dict[str, list[str]] = field(default_factory=lambda: {f: [] for f in FIELDS})
    homonyms: dict[str, list[str]] = field(default_factory=lambda: {f: [] for f in FIELDS})
    passed_on: dict[str, list[str]] = field(default_factory=lambda: {f: [] for f in FIELDS})
    dash: list[str] = field(default_factory=list)


def _dash_names(tree: ast.Module) -> set[str]:
    """Module-level names bound to "-" (``STREAM = "-"``)."""
    names = set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and _is_dash(node.value, set()):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return names


def _is_dash(node: ast.expr, names: set[str]) -> bool:
    if isinstance(node, ast.Constant) and node.value == "-":
        return True
    return isinstance(node, ast.Name) and node.id in names


def _passes_on(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda, name: str) -> bool:
    """Does the function give its parameter ``name``, as it is, to a call (``f(name)``,
    ``f(x=name)``), in its body or a lambda or function inside it?"""
    body = node.body if isinstance(node.body, list) else [node.body]
    for statement in body:
        for call in ast.walk(statement):
            if not isinstance(call, ast.Call):
                continue
            values = [*call.args, *(k.value for k in call.keywords)]
            if any(isinstance(v, ast.Name) and v.id == name for v in values):
                return True
    return False


def _function_name(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> str:
    """``Class.method``, ``outer.<locals>.inner``, ``f.<lambda>``: where the function sits."""
    names = []
    current: ast.AST | None = node
    while current is not None:
        if isinstance(current, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.append(current.name)
        elif isinstance(current, ast.Lambda):
            names.append("<lambda>")
        current = parents.get(current)
    return ".".join(reversed(names))


def scan(path: Path, root: Path, found: Found) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    dash = _dash_names(tree)
    where = str(path.relative_to(root))
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            a = node.args
            params = {p.arg for p in [*a.posonlyargs, *a.args, *a.kwonlyargs]}
            qualified = _function_name(node, parents)
            for name, aliases in FIELDS.items():
                taken = sorted(params & set(aliases))
                if not taken:
                    continue
                place = f"{where}:{node.lineno} {qualified}"
                found.functions[name].append(place)
                if all((qualified, p) in HOMONYMS for p in taken):
                    found.homonyms[name].append(place)
                elif any(_passes_on(node, p) for p in taken):
                    found.passed_on[name].append(place)
        elif isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(_is_dash(side, dash) for side in sides):
                found.dash.append(f"{where}:{node.lineno} {ast.unparse(node)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package", nargs="?", default="persevere", type=Path)
    parser.add_argument("--where", action="store_true", help="list every function and place")
    parser.add_argument("--aliases", action="store_true", help="the parameter names per field")
    parser.add_argument("--json", action="store_true", help="one JSON document")
    args = parser.parse_args(argv)
    if args.aliases:
        for name, aliases in FIELDS.items():
            print(f"{name}: {', '.join(aliases)}")
        return 0
    found = Found()
    root = args.package.parent
    for path in sorted(args.package.rglob("*.py")):
        scan(path, root, found)
    if args.json:
        document = {
            "functions": {name: len(places) for name, places in found.functions.items()},
            "homonyms": {name: len(places) for name, places in found.homonyms.items()},
            "passed_on": {name: len(places) for name, places in found.passed_on.items()},
            "dash_comparisons": len(found.dash),
            "where": {**found.functions, "dash_comparisons": found.dash},
        }
        print(json.dumps(document, indent=2))
        return 0
    print(f"{'request field':<18} {'by name':>7} {'homonyms':>8} {'passed on':>9}"
          "  (goal: at most 3 by name)")  # fmt: skip
    for name, places in found.functions.items():
        homonyms, passed = found.homonyms[name], found.passed_on[name]
        print(f"{name:<18} {len(places):>7} {len(homonyms):>8} {len(passed):>9}")
        if args.where:
            for place in places:
                mark = (
                    " (homonym)" if place in homonyms else " (passed on)" if place in passed else ""
                )
                print(f"    {place}{mark}")
    by_module: dict[str, int] = {}
    for place in found.dash:
        module = place.split(":", 1)[0]
        by_module[module] = by_module.get(module, 0) + 1
    spread = ", ".join(f"{m} {n}" for m, n in sorted(by_module.items(), key=lambda i: -i[1]))
    print(f'"-" comparisons: {len(found.dash)} ({spread})  (goal: where the source is resolved)')
    if args.where:
        for place in found.dash:
            print(f"    {place}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
