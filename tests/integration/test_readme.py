"""The README's Python examples run as written (on the shipped samples and the shipped small model)."""

from __future__ import annotations

import re

import pytest

from conftest import REPO

BLOCKS = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)


def test_the_readme_has_python_examples():
    assert len(BLOCKS) >= 2 and all("import longvlm" in block for block in BLOCKS)


@pytest.mark.parametrize("number", range(len(BLOCKS)))
def test_readme_python_block_runs(number, monkeypatch, capsys):
    monkeypatch.chdir(REPO)  # the examples name files relative to the repository (samples/...)
    code = compile(BLOCKS[number], f"README.md python block {number + 1}", "exec")
    exec(code, {"__name__": f"readme_block_{number + 1}"})  # our own README's code, not user input
    assert capsys.readouterr().out.strip()  # every example prints what it computed
