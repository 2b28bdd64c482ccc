"""Every registered check and family is documented in the README, each check on a line that says what it
means (a table row `| \\`dark\\` | ... |` or a list item `- \\`dark\\`: ...`)."""
from __future__ import annotations

import re
from pathlib import Path

from inspect_core.checks import REGISTRY, all_check_names

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_lines() -> list[str]:
    assert README.is_file(), "README.md is missing"
    return README.read_text(encoding="utf-8").splitlines()


def meaning(line: str) -> list[str]:
    """The words a line says besides the code spans in it (check names, commands) and table pipes."""
    text = re.sub(r"`[^`]*`", " ", line)
    return re.findall(r"[A-Za-z][A-Za-z'-]*", text)


def test_every_check_is_documented_with_its_meaning():
    lines_all = readme_lines()
    undocumented = []
    for check in all_check_names():
        lines = [ln for ln in lines_all if f"`{check}`" in ln]
        if not any(len(meaning(ln)) >= 3 for ln in lines):
            undocumented.append(check)
    assert not undocumented, f"checks not documented in README.md with their meaning: {undocumented}"


def test_every_family_is_named():
    text = "\n".join(readme_lines())
    missing = [f for f in REGISTRY if not re.search(rf"\b{re.escape(f)}\b", text)]
    assert not missing, f"check families not named in README.md: {missing}"


def test_meaning_parser():
    assert meaning("| `dark` | Mean brightness far below the dataset's |")[:2] == ["Mean", "brightness"]
    assert meaning("| integrity | `empty_file`, `unreadable`, `truncated` |") == ["integrity"]
