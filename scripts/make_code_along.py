"""Generate the learners' code-along notebooks from the executed lesson notebooks.

    python scripts/make_code_along.py          # write notebooks/code-along/*.ipynb
    python scripts/make_code_along.py --check  # exit 1 if any is missing or out of date

A code-along notebook is its lesson notebook with every exercise solution (a
code cell tagged "solution") replaced by an empty exercise cell, and with all
outputs cleared, so learners type along with the instructor. Its code cells are
tagged "nbval-ignore-output": `make test` runs them to prove they execute, but
there are no outputs to compare.
"""

import argparse
import copy
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "notebooks"
TARGET = SOURCE / "code-along"
EXERCISE_CELL = "# Exercise: write your answer here, then compare it with the solution in the episode."


def code_along(notebook):
    """The code-along version of one executed notebook."""
    result = copy.deepcopy(notebook)
    cells = []
    for cell in result.cells:
        if cell.cell_type == "code":
            if "solution" in cell.metadata.get("tags", []):
                cell = nbformat.v4.new_code_cell(EXERCISE_CELL, id=cell.get("id"))
            cell.outputs = []
            cell.execution_count = None
            # The tag, unless the cell already says so in a comment (nbval warns about both).
            cell.metadata = {} if "NBVAL_IGNORE_OUTPUT" in cell.source else {"tags": ["nbval-ignore-output"]}
        cells.append(cell)
    result.cells = cells
    result.metadata.get("xai_lesson", {})["code_along"] = True
    return result


def render(notebook):
    return nbformat.writes(notebook) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that they are up to date")
    args = parser.parse_args()
    TARGET.mkdir(exist_ok=True)
    stale = []
    sources = sorted(SOURCE.glob("*.ipynb"))
    for source in sources:
        wanted = render(code_along(nbformat.read(source, as_version=4)))
        target = TARGET / source.name
        if args.check:
            if not target.exists() or target.read_text(encoding="utf-8") != wanted:
                stale.append(target.relative_to(ROOT))
        else:
            target.write_text(wanted, encoding="utf-8")
    extra = sorted({p.name for p in TARGET.glob("*.ipynb")} - {s.name for s in sources})
    stale += [Path("notebooks/code-along") / name for name in extra]
    if stale:
        print("Out of date: " + ", ".join(map(str, stale)))
        print("Run `python scripts/make_code_along.py` and commit the result.")
        sys.exit(1)
    print(f"{len(sources)} code-along notebooks {'are up to date' if args.check else 'written'}.")


if __name__ == "__main__":
    main()
