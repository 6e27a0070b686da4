"""The parity table (docs/parity/README.md) names a test for every row, and each named test exists."""

from __future__ import annotations

import ast
import re

from conftest import REPO

TABLE = REPO / "docs" / "parity" / "README.md"


def _test_names() -> set[str]:
    names = set()
    for path in (REPO / "tests").rglob("test_*.py"):
        tree = ast.parse(path.read_text())
        names |= {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)
                  and node.name.startswith("test_")}
    return names


def test_every_row_names_existing_tests():
    rows = [line for line in TABLE.read_text().splitlines() if line.startswith("| ") and not line.startswith("| ---")]
    assert len(rows) > 30  # header + a row per choice
    known = _test_names()
    for row in rows[1:]:
        test_cell = [c.strip() for c in re.split(r"(?<!\\)\|", row.strip().strip("|"))][5]
        named = re.findall(r"`(test_\w+)", test_cell)
        if test_cell.startswith("—"):  # a documented difference of architecture, no option to test
            continue
        assert named, f"row without a test: {row[:120]}"
        missing = [n for n in named if n not in known]
        assert not missing, f"{missing} named in the parity table do not exist"
