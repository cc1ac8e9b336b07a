"""Every ```python block of the README runs as written."""

from __future__ import annotations

import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README has no Python example"
    for code in blocks:
        exec(compile(code, str(README), "exec"), {"__name__": "readme"})
    out = capsys.readouterr().out
    assert "{'hbm': 4, 'flash': 6, 'missing': 0}" in out and "{'hbm': 0, 'flash': 6, 'missing': 4}" in out


def test_readme_opens_with_the_two_commands():
    head = README.read_text().split("\n\n")[1]
    assert "make bench" in head and "make test" in head
