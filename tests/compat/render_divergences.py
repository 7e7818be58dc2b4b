"""Renders tests/compat/divergences.toml as the table in docs/compat.md.

    python tests/compat/render_divergences.py --write   # update docs/compat.md
    python tests/compat/render_divergences.py           # print the table

test_divergences.py fails when docs/compat.md and divergences.toml disagree.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from compat_util import REPO_ROOT, load_divergences  # noqa: E402

DOC = REPO_ROOT / "docs" / "compat.md"
BEGIN = "<!-- divergences:begin (generated from tests/compat/divergences.toml) -->"
END = "<!-- divergences:end -->"


def _cell(s: str) -> str:
    return " ".join(s.split()).replace("|", "\\|")


def render() -> str:
    rows = [
        "| id | where | what differs | why | until |",
        "| --- | --- | --- | --- | --- |",
    ]
    for d in load_divergences():
        where = ", ".join(f"`{g}`" for g in d.scenarios)
        what = ", ".join(f"`{w}`" for w in d.what)
        rows.append(f"| {d.id} | {_cell(where)} | {_cell(what)} | {_cell(d.reason)} | {_cell(d.pending) or 'stays'} |")
    return "\n".join(rows)


def with_table(doc: str) -> str:
    start, end = doc.index(BEGIN) + len(BEGIN), doc.index(END)
    return doc[:start] + "\n" + render() + "\n" + doc[end:]


if __name__ == "__main__":
    if "--write" in sys.argv:
        DOC.write_text(with_table(DOC.read_text()))
    else:
        print(render())
