"""Every ```python block of the README and of every ``docs/`` page runs as written."""

from __future__ import annotations

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))


def _blocks(path: pathlib.Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S)


def _run(path: pathlib.Path) -> None:
    for code in _blocks(path):
        exec(compile(code, str(path), "exec"), {"__name__": "readme"})


def test_readme_python_blocks_run(capsys):
    assert _blocks(README), "the README has no Python example"
    _run(README)
    out = capsys.readouterr().out
    assert "{'hbm': 4, 'flash': 6, 'missing': 0}" in out and "{'hbm': 0, 'flash': 6, 'missing': 4}" in out


@pytest.mark.parametrize("page", DOCS, ids=[p.name for p in DOCS])
def test_docs_python_blocks_run(page):
    _run(page)


def test_readme_opens_with_the_two_commands_and_fits_on_a_screen():
    text = README.read_text(encoding="utf-8")
    head = text.split("\n\n")[1]
    assert "make bench" in head and "make test" in head
    assert len(text.splitlines()) < 200
    for page in DOCS:  # every page is linked from the README
        assert f"docs/{page.name}" in text, page.name
