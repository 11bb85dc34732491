"""The notebooks as files: executed, paired, budgeted, Colab-ready, and their code-along copies current.

nbval (run by `make test` on notebooks/) re-executes them and compares outputs;
these tests check what nbval does not.
"""

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
PLACEHOLDER = re.compile(r"^\s*\.\.\.\s*$|=\s*\.\.\.\s*(#.*)?$|\bTODO\b|\bpass\s*#", re.M)


def load(path):
    return json.loads(path.read_text(encoding="utf-8"))


def code_cells(notebook):
    return [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]


def script(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_there_is_a_notebook_per_episode():
    assert [p.stem for p in NOTEBOOKS] == sorted(p.stem for p in (ROOT / "episodes").glob("*.md"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_executed_in_order_without_errors(path):
    cells = code_cells(load(path))
    counts = [cell["execution_count"] for cell in cells]
    assert None not in counts, "a code cell was never run: execute with scripts/run_lesson.py --in-place"
    assert counts == sorted(counts), "cells were run out of order"
    for cell in cells:
        for output in cell["outputs"]:
            assert output["output_type"] != "error", "".join(cell["source"])[:200]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_declares_its_episode_and_budgets(path):
    meta = load(path)["metadata"]["xai_lesson"]
    assert meta["episode"] == f"episodes/{path.stem}.md"
    assert meta["time_budget_s"] <= 120 and meta["memory_budget_mb"] <= 2000


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_starts_with_the_colab_cell_then_seeds(path):
    cells = code_cells(load(path))
    assert "".join(cells[0]["source"]) == script("colab_cell").COLAB_CELL
    assert cells[0]["outputs"] == []
    assert "xai_lesson.notebook_setup(" in "".join(cells[1]["source"])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_code_has_no_placeholders_or_eval(path):
    for cell in code_cells(load(path)):
        source = "".join(cell["source"])
        assert not PLACEHOLDER.search(source), f"placeholder in: {source[:200]}"
        # eval() of text is banned; a method call such as model.eval() is not eval.
        assert not re.search(r"(?<![.\w])eval\(", source), "no eval in the lesson's code"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_solutions_are_tagged_and_there_are_exercises(path):
    solutions = [c for c in code_cells(load(path)) if "solution" in c["metadata"].get("tags", [])]
    assert len(solutions) >= 3, "each episode has at least three exercises with solutions"


def test_code_along_notebooks_are_up_to_date():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_code_along.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_code_along_drops_solutions_and_outputs():
    make = script("make_code_along")
    source = load(NOTEBOOKS[0])
    generated = load(ROOT / "notebooks" / "code-along" / NOTEBOOKS[0].name)
    solutions = ["".join(c["source"]) for c in code_cells(source) if "solution" in c["metadata"].get("tags", [])]
    generated_sources = ["".join(c["source"]) for c in code_cells(generated)]
    assert not set(solutions) & set(generated_sources)
    assert generated_sources.count(make.EXERCISE_CELL) == len(solutions)
    # Check cells keep one output, the "not done yet" line (tested in test_exercises.py); the rest have none.
    others = [c for c in code_cells(generated) if not make.CHECK_CALL.search("".join(c["source"]))]
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in others)


CODE_ALONG = sorted((ROOT / "notebooks" / "code-along").glob("*.ipynb"))


@pytest.mark.parametrize("path", CODE_ALONG, ids=lambda p: p.stem)
def test_code_along_stubs_every_exercise_and_expects_not_done_yet(path):
    """Each solution body is a stub; each check cell expects its "not done yet" line (nbval compares it)."""
    from xai_lesson.exercises import EXERCISES

    make = script("make_code_along")
    authors = "".join("".join(c["source"]) for c in code_cells(load(ROOT / "notebooks" / path.name)))
    for cell in code_cells(load(path)):
        source = "".join(cell["source"])
        assert make.BEGIN not in source and make.END not in source, source[:200]
        checks = make.CHECK_CALL.findall(source)
        printed = "".join("".join(o.get("text", "")) for o in cell["outputs"])
        if checks:
            assert printed == "".join(EXERCISES[c].not_done() + "\n" for c in checks)
            assert "nbval-ignore-output" not in cell["metadata"].get("tags", [])
        else:
            assert cell["outputs"] == []
    for registered in EXERCISES.values():
        if f"exercises.{registered.check}(" in authors:
            assert registered.stub() in "".join("".join(c["source"]) for c in code_cells(load(path)))
            assert f"def {registered.function}(" in authors


def test_code_along_turns_a_solution_body_into_its_stub():
    make = script("make_code_along")
    source = ('def gradcam_weights(A, dA):\n    """Docstring."""\n    # BEGIN SOLUTION\n'
              '    return dA.mean(dim=(1, 2))\n    # END SOLUTION\n\nprint("after")')
    assert make.stub_source(source, "test") == (
        'def gradcam_weights(A, dA):\n    """Docstring."""\n'
        '    raise NotImplementedError("Exercise 4.2: write gradcam_weights; see the episode")\n\nprint("after")')
    for broken, problem in [("    # BEGIN SOLUTION\n    return 1\n", "must follow the `def` line"),
                            ("def gradcam_weights(A, dA):\n    # BEGIN SOLUTION\n    return 1\n", "without `# END"),
                            ("def gradcam_weights(A, dA):\n    return 1\n    # END SOLUTION\n", "without `# BEGIN"),
                            ("def not_an_exercise():\n    # BEGIN SOLUTION\n    # END SOLUTION", "register its check")]:
        with pytest.raises((make.ExerciseError, KeyError), match=problem):
            make.stub_source(broken, "test")


def test_code_along_refuses_an_authors_check_that_did_not_pass():
    import nbformat

    make = script("make_code_along")
    notebook = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("gradcam_weights = exercises.check_gradcam_weights(gradcam_weights)")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="Exercise 4.2 gradcam_weights: not right yet\n")]
    notebook.cells = [cell]
    with pytest.raises(make.ExerciseError, match="must print"):
        make.code_along(notebook)


def test_code_along_collapses_the_colab_cell_and_the_claim_checks():
    make = script("make_code_along")
    import nbformat

    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("Accompanies the episode."),
        nbformat.v4.new_code_cell(make.COLAB_MARKER + " on Colab this cell installs the lesson"),
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_code_cell("claims.expect(x == 1, 'x is one')", metadata={"tags": ["claims"]},
                                  outputs=[nbformat.v4.new_output("stream", name="stdout", text="\u2714 x is one\n")]),
    ])
    colab, plain, claims = [c for c in make.code_along(notebook).cells if c.cell_type == "code"]
    assert colab.metadata["jupyter"] == {"source_hidden": True}
    assert "jupyter" not in plain.metadata
    assert claims.metadata["jupyter"] == {"source_hidden": True} and claims.outputs == []
    assert claims.metadata["tags"] == ["claims", "nbval-ignore-output"]


@pytest.mark.parametrize("path", CODE_ALONG, ids=lambda p: p.stem)
def test_learners_see_the_colab_cell_and_claim_checks_collapsed(path):
    for cell in code_cells(load(path)):
        source = "".join(cell["source"])
        hidden = cell["metadata"].get("jupyter", {}).get("source_hidden", False)
        if source.startswith("# Colab set-up:") or "claims" in cell["metadata"].get("tags", []):
            assert hidden, f"{path.name}: this cell should be collapsed for learners: {source[:60]!r}"


def test_the_lesson_runner_reports_the_slowest_cells():
    run_lesson = script("run_lesson")

    def cell(source, busy, idle, kind="code"):
        stamps = {"iopub.status.busy": f"2026-12-07T10:00:{busy:06.3f}Z", "iopub.status.idle": f"2026-12-07T10:00:{idle:06.3f}Z"}
        return {"cell_type": kind, "source": source, "metadata": {"execution": stamps} if kind == "code" else {}}

    notebook = {"cells": [cell("# Setup\nimport torch", 0, 1.5), cell("Some text", 0, 0, kind="markdown"),
                          cell("x = slow()", 2, 9.25), cell(["\n", "y = 1\n"], 10, 10.1),
                          cell("z = | `odd`", 11, 14), {"cell_type": "code", "source": "never", "metadata": {}}]}
    slowest = run_lesson.slowest_cells(notebook)
    assert slowest == [(2, "x = slow()", 7.25), (4, "z = | `odd`", 3.0), (0, "# Setup", 1.5)]
    assert run_lesson.describe_slowest(slowest[:2]) == "cell 2 (`x = slow()`) 7.2 s; cell 4 (`z = / odd`) 3.0 s"
    assert run_lesson.describe_slowest([]) == "-"
