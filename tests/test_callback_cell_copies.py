"""The callback cell is copied into every notebook that calls DARA back; the copies must not drift.

``notebooks/dara_demo.py`` holds the cell's source (the README points users at it). Every
other notebook in the project that carries the cell -- found by its first line, so a new
copy is checked without being listed here -- must hold it byte for byte.
"""

from __future__ import annotations

from pathlib import Path

from app.settings import PROJECT_ROOT

SOURCE = PROJECT_ROOT / "notebooks" / "dara_demo.py"
FIRST_LINE = "# DARA callback cell"
CELL_BREAK = "# COMMAND ----------"


def callback_cell(notebook: Path) -> str | None:
    """The cell (a Databricks source-format notebook's cells split on CELL_BREAK) that starts with FIRST_LINE."""
    cells = notebook.read_text().split(CELL_BREAK)
    found = [cell.strip() for cell in cells if cell.strip().startswith(FIRST_LINE)]
    assert len(found) <= 1, f"{notebook} has {len(found)} callback cells"
    return found[0] if found else None


def test_every_copy_of_the_callback_cell_equals_its_source() -> None:
    source = callback_cell(SOURCE)
    assert source is not None, f"{SOURCE} lost its callback cell"
    copies = [
        path
        for folder in ("notebooks", "examples", "tests/notebooks")
        for path in sorted((PROJECT_ROOT / folder).rglob("*.py"))
        if path != SOURCE and FIRST_LINE in path.read_text()
    ]
    assert copies, "no copy found: the search would pass vacuously"
    for path in copies:
        assert callback_cell(path) == source, (
            f"{path.relative_to(PROJECT_ROOT)}'s callback cell differs from {SOURCE.name}'s: copy it again"
        )
