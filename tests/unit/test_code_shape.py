"""The code's shape is a checked rule: small modules and short functions in product code.

A newcomer should read any module in one sitting and any function on one screen.
An exception is named here with its reason, or it is a failure.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("schemas", "producer", "consumers", "runstream")
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
#: "path:function" -> why it may be longer.
LONG_FUNCTIONS: dict[str, str] = {}


def product_modules() -> list[Path]:
    return sorted(p for root in PRODUCT for p in (ROOT / root).rglob("*.py"))


def long_functions(path: Path) -> list[tuple[str, int]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                found.append((node.name, length))
    return found


def test_no_product_module_is_over_400_lines() -> None:
    modules = product_modules()
    assert len(modules) > 50  # the walk found the product code
    big = {
        str(p.relative_to(ROOT)): n
        for p in modules
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert big == {}


def test_no_product_function_is_over_60_lines() -> None:
    long = {
        f"{p.relative_to(ROOT)}:{name}": n
        for p in product_modules()
        for name, n in long_functions(p)
        if f"{p.relative_to(ROOT)}:{name}" not in LONG_FUNCTIONS
    }
    assert long == {}


def test_the_check_finds_a_long_function(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    module = tmp_path / "long.py"
    module.write_text(f"def long():\n{body}\n")
    assert long_functions(module) == [("long", MAX_FUNCTION_LINES + 1)]
