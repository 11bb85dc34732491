"""Put the Colab set-up cell at the top of every lesson notebook (idempotent).

    python scripts/colab_cell.py          # add or refresh the cell
    python scripts/colab_cell.py --check  # exit 1 if a notebook lacks the current cell

The cell installs the lesson when the notebook runs on Colab, and does nothing
anywhere else, so it prints nothing under `make lesson` or `make test`.
"""

import argparse
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
MARKER = "# Colab set-up:"
COLAB_CELL = f"""{MARKER} on Colab this cell fetches the lesson and installs what it needs
# (about 2 minutes, once per session). Anywhere else it does nothing.
import sys

if "google.colab" in sys.modules:
    import os
    import subprocess

    lesson = "/content/xai-deep-learning"
    if not os.path.isdir(lesson):
        subprocess.run(["git", "clone", "--depth", "1",
                        "https://github.com/xai-lesson/xai-deep-learning", lesson], check=True)
        subprocess.run(["bash", f"{{lesson}}/scripts/colab_setup.sh"], check=True)
    sys.path.insert(0, lesson)
    os.chdir(f"{{lesson}}/notebooks")"""


def ensure_cell(notebook):
    """Return True if the notebook changed."""
    code_cells = [i for i, cell in enumerate(notebook.cells) if cell.cell_type == "code"]
    first = code_cells[0] if code_cells else len(notebook.cells)
    if code_cells and notebook.cells[first].source.startswith(MARKER):
        if notebook.cells[first].source == COLAB_CELL:
            return False
        notebook.cells[first].source = COLAB_CELL
        return True
    cell = nbformat.v4.new_code_cell(COLAB_CELL, id="colab-setup")
    cell.execution_count = 1
    notebook.cells.insert(first, cell)
    return True


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    missing = []
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        if ensure_cell(notebook):
            missing.append(path.name)
            if not args.check:
                nbformat.write(notebook, path)
    if args.check and missing:
        sys.exit(f"No current Colab cell in {missing}: run `python scripts/colab_cell.py`.")
    print(f"Colab cell {'missing from' if args.check else 'added to'} {len(missing)} notebooks.")


if __name__ == "__main__":
    main()
