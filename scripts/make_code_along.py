"""Generate the learners' code-along notebooks from the executed lesson notebooks.

    python scripts/make_code_along.py          # write notebooks/code-along/*.ipynb
    python scripts/make_code_along.py --check  # exit 1 if any is missing or out of date

A code-along notebook is its lesson (authors') notebook with:

- every code-along exercise turned into a stub: in a code cell, the lines from
  `# BEGIN SOLUTION` to `# END SOLUTION` (the body of the function the learner
  writes) become `raise NotImplementedError("Exercise 4.2: write gradcam_weights; see the episode")`,
  keeping the signature and docstring above them;
- every check cell (a cell that calls `exercises.check_<function>(...)`) given the
  output it prints for an unfilled stub, the "not done yet" line, so that nbval
  compares it: CI proves that each check recognises a stub and that the notebook
  carries on with the reference version;
- every challenge solution (a code cell tagged "solution") replaced by an empty
  exercise cell;
- all other outputs cleared, and those cells tagged "nbval-ignore-output": nbval runs
  them to prove they execute, but there are no outputs to compare;
- the cells a learner need not read collapsed (JupyterLab's `source_hidden`): the
  Colab set-up cell, and the claim checks (cells tagged "claims", whose ✔ lines tell
  the learner that each claim of the episode held on their machine).

It also refuses an authors' notebook whose check cell did not print "correct": the
solution in the authors' notebook must pass its own check.
"""

import argparse
import copy
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "notebooks"
TARGET = SOURCE / "code-along"
EXERCISE_CELL = "# Exercise: write your answer here, then compare it with the solution in the episode."
BEGIN, END = "# BEGIN SOLUTION", "# END SOLUTION"
CHECK_CALL = re.compile(r"\bexercises\.(check_\w+)\(")
DEF = re.compile(r"^\s*def (\w+)\(")
CLAIMS_TAG = "claims"
COLAB_MARKER = "# Colab set-up:"

sys.path.insert(0, str(ROOT))
from xai_lesson.exercises import EXERCISES, by_function  # noqa: E402  (after the path is set)


class ExerciseError(ValueError):
    """An authors' notebook whose exercise cells the generator cannot turn into stubs."""


def stub_source(source, where):
    """The cell's source with each solution body (BEGIN to END marker) replaced by its stub."""
    lines, result, function = source.split("\n"), [], None
    inside = False
    for line in lines:
        stripped = line.strip()
        if stripped == BEGIN:
            if inside or function is None:
                raise ExerciseError(f"{where}: `{BEGIN}` must follow the `def` line of the function the learner writes")
            inside = True
            indent = line[:len(line) - len(line.lstrip())]
            result.append(indent + by_function(function).stub())
        elif stripped == END:
            if not inside:
                raise ExerciseError(f"{where}: `{END}` without `{BEGIN}`")
            inside = False
        elif not inside:
            match = DEF.match(line)
            if match:
                function = match.group(1)
            result.append(line)
    if inside:
        raise ExerciseError(f"{where}: `{BEGIN}` without `{END}`")
    return "\n".join(result)


def printed(cell):
    return "".join(output.get("text", "") for output in cell.outputs if output.get("output_type") == "stream")


def code_along(notebook, name="notebook"):
    """The code-along version of one executed notebook."""
    result = copy.deepcopy(notebook)
    cells, count = [], 0
    for number, cell in enumerate(result.cells):
        if cell.cell_type == "code":
            count += 1
            where = f"{name}, cell {number}"
            checks = CHECK_CALL.findall(cell.source)
            if "solution" in cell.metadata.get("tags", []):
                cell = nbformat.v4.new_code_cell(EXERCISE_CELL, id=cell.get("id"))
            elif checks:
                unknown = [check for check in checks if check not in EXERCISES]
                if unknown:
                    raise ExerciseError(f"{where}: {unknown} are not registered in xai_lesson/exercises/")
                exercises = [EXERCISES[check] for check in checks]
                authors = [e.correct() for e in exercises]
                if printed(cell).splitlines() != authors:
                    raise ExerciseError(f"{where}: the authors' check cell must print {authors}, got "
                                        f"{printed(cell).splitlines()}: run the notebook again, or fix its solution")
                cell.outputs = [nbformat.v4.new_output("stream", name="stdout",
                                                       text="".join(e.not_done() + "\n" for e in exercises))]
                cell.execution_count = count  # nbval ignores the outputs of a cell that never ran
                cell.metadata = {}            # nbval compares the "not done yet" line
                cells.append(cell)
                continue
            if BEGIN in cell.source:
                cell.source = stub_source(cell.source, where)
            claims = CLAIMS_TAG in cell.metadata.get("tags", [])
            cell.outputs = []
            cell.execution_count = None
            # The tag, unless the cell already says so in a comment (nbval warns about both).
            cell.metadata = {} if "NBVAL_IGNORE_OUTPUT" in cell.source else {"tags": ["nbval-ignore-output"]}
            if claims:
                cell.metadata.setdefault("tags", []).insert(0, CLAIMS_TAG)
            if claims or cell.source.startswith(COLAB_MARKER):
                cell.metadata["jupyter"] = {"source_hidden": True}
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
        try:
            wanted = render(code_along(nbformat.read(source, as_version=4), source.name))
        except ExerciseError as error:
            print(error)
            sys.exit(1)
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
