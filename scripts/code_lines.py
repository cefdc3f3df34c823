"""Count the code lines of a Python package: blank, comment and docstring lines left out.

The one-path reshape (issue 25) is measured by this count: ``python scripts/code_lines.py``
prints the package's total and the count of each module, so a before and an after can be
compared on the same rule.

A line counts when a token other than a comment, a newline or indentation starts, ends or
runs through it (a multi-line string or call counts on every line it spans), unless the line
belongs to a docstring: the string that is the first statement of a module, class or function
(as :func:`ast.get_docstring` reads it). Read with :mod:`tokenize` and :mod:`ast`, never with
regular expressions, so a ``#`` inside a string or a docstring-like string in code is read as
Python reads it.
"""

from __future__ import annotations

import argparse
import ast
import io
import json
import re
import shutil
import subprocess
import sys
import tokenize
from pathlib import Path

_NOT_CODE = frozenset(
    {
        tokenize.COMMENT,
        tokenize.NL,
        tokenize.NEWLINE,
        tokenize.INDENT,
        tokenize.DEDENT,
        tokenize.ENCODING,
        tokenize.ENDMARKER,
    }
)


def docstring_lines(tree: ast.Module) -> set[int]:
    """Every line a docstring (of the module, a class or a function) spans."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        body = node.body
        if not body:
            continue
        first = body[0]
        if (
            isinstance(first, ast.Expr)
            and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)
        ):
            end = first.end_lineno or first.lineno
            lines.update(range(first.lineno, end + 1))
    return lines


def code_lines(source: str) -> set[int]:
    """The numbers of the lines of ``source`` that hold code (see the module docstring)."""
    lines: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type in _NOT_CODE:
            continue
        lines.update(range(token.start[0], token.end[0] + 1))
    return lines - docstring_lines(ast.parse(source))


_FMT_MARKER = re.compile(r"[ \t]*#\s*fmt:\s*(?:skip|off|on)\b[^\n]*")


def as_ruff_formats(source: str) -> str:
    """``source`` as ``ruff format`` writes it once its ``# fmt: skip/off/on`` markers are gone:
    statements packed by hand onto fewer lines count as the formatter would spread them, so a
    count cannot fall by layout alone."""
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    done = subprocess.run(
        [ruff, "format", "--stdin-filename", "persevere/x.py", "-"],
        input=_FMT_MARKER.sub("", source),
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def count(package: Path, *, formatted: bool = False) -> dict[str, dict[str, int]]:
    """Per module: its lines in all (``wc -l``) and its code lines (as ``ruff format`` would
    write it without its fmt markers: ``formatted``)."""
    result = {}
    for path in sorted(package.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        result[str(path.relative_to(package.parent))] = {
            "lines": len(text.splitlines()),
            "code": len(code_lines(as_ruff_formats(text) if formatted else text)),
        }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package", nargs="?", default="persevere", type=Path)
    parser.add_argument("--json", action="store_true", help="one JSON document")
    parser.add_argument(
        "--as-ruff-formats",
        action="store_true",
        help="count each module as ruff format writes it without fmt markers",
    )
    args = parser.parse_args(argv)
    modules = count(args.package, formatted=args.as_ruff_formats)
    total = {
        "lines": sum(m["lines"] for m in modules.values()),
        "code": sum(m["code"] for m in modules.values()),
    }
    if args.json:
        print(json.dumps({"total": total, "modules": modules}, indent=2))
        return 0
    width = max(map(len, modules), default=0)
    print(f"{'module':<{width}} {'lines':>6} {'code':>6}")
    for name, m in sorted(modules.items(), key=lambda item: -item[1]["code"]):
        print(f"{name:<{width}} {m['lines']:>6} {m['code']:>6}")
    print(f"{'total':<{width}} {total['lines']:>6} {total['code']:>6}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
