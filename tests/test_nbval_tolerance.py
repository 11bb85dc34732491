"""The nbval tolerance plugin: floats may move in their last digits; integers, words and tokens may not."""

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from tests.nbval_tolerance import (DEFAULT, ToleranceError, floats_agree, last_digit_unit, texts_agree,
                                   tolerance_for)

ROOT = Path(__file__).resolve().parent.parent
RTOL, ATOL = DEFAULT["rtol"], DEFAULT["atol"]


def test_last_digit_unit():
    assert last_digit_unit("0.215") == pytest.approx(1e-3)
    assert last_digit_unit("55.9") == pytest.approx(0.1)
    assert last_digit_unit("2.3e-06") == pytest.approx(1e-7)
    assert last_digit_unit("3.") == pytest.approx(1.0)


@pytest.mark.parametrize("reference, test", [
    ("0.218", "0.215"),          # the drift seen on a second machine
    ("55.7", "55.9"),
    ("0.012", "0.013"),          # one unit in the last digit, always allowed
    ("8.6e-07", "2.3e-06"),      # tiny numbers: inside atol
    ("-0.000", "0.000"),
])
def test_machine_drift_is_accepted(reference, test):
    assert floats_agree(reference, test, RTOL, ATOL)[0]


@pytest.mark.parametrize("reference, test", [("0.336", "0.285"), ("0.79", "0.83"), ("12.5", "13.5")])
def test_real_changes_are_caught(reference, test):
    assert not floats_agree(reference, test, RTOL, ATOL)[0]


def test_texts_agree_compares_floats_loosely_and_the_rest_exactly():
    assert texts_agree("mass inside 0.218 (3 of 10)", "mass inside 0.215 (3 of 10)", RTOL, ATOL) is None
    assert texts_agree("acc 9.99  | ok", "acc 10.01 | ok", RTOL, ATOL) is None  # column width
    assert "text differs" in texts_agree("3 of 10 hits", "4 of 10 hits", RTOL, ATOL)  # counts are exact
    assert "text differs" in texts_agree("top: ' Paris' 0.70", "top: ' Rome' 0.70", RTOL, ATOL)
    assert "floats" in texts_agree("a 0.5 b", "a 0.5 0.6 b", RTOL, ATOL) or \
        "text differs" in texts_agree("a 0.5 b", "a 0.5 0.6 b", RTOL, ATOL)
    message = texts_agree("selectivity 0.336", "selectivity 0.285", RTOL, ATOL)
    assert "0.285 differs from the committed 0.336" in message and "rtol=0.02" in message


def test_tolerance_for_reads_notebook_then_cell():
    assert tolerance_for({}, "x = 1") == DEFAULT
    notebook = {"xai_lesson": {"nbval_tolerance": {"rtol": 0.05}}}
    assert tolerance_for(notebook, "x = 1") == {"rtol": 0.05, "atol": ATOL}
    cell = "# NBVAL_TOLERANCE rtol=0.1 atol=0.01: the CNN is retrained\nprint(1)"
    assert tolerance_for(notebook, cell) == {"rtol": 0.1, "atol": 0.01}


@pytest.mark.parametrize("metadata, cell, words", [
    ({}, "# NBVAL_TOLERANCE rtol=0.1\n", "needs a reason"),
    ({}, "# NBVAL_TOLERANCE rtol=lots: why\n", "does not understand"),
    ({}, "# NBVAL_TOLERANCE rtol=0.1: a\n# NBVAL_TOLERANCE atol=1: b\n", "one '# NBVAL_TOLERANCE' line"),
    ({"xai_lesson": {"nbval_tolerance": {"relative": 0.1}}}, "", "unknown keys"),
    ({}, "# NBVAL_TOLERANCE atol=-1: negative\n", "non-negative"),
])
def test_bad_settings_get_a_clear_error(metadata, cell, words):
    with pytest.raises(ToleranceError, match=words):
        tolerance_for(metadata, cell)


def _notebook(path, cells, metadata=None):
    """Write a notebook whose committed outputs are given: [(source, printed text), ...]."""
    notebook = nbformat.v4.new_notebook()
    notebook.metadata.update(metadata or {})
    for count, (source, text) in enumerate(cells, 1):
        cell = nbformat.v4.new_code_cell(source, execution_count=count)
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)]
        notebook.cells.append(cell)
    nbformat.write(notebook, path)


def _nbval(tmp_path):
    """Run nbval with the plugin on tmp_path, as `make test` does."""
    (tmp_path / "conftest.py").write_text(f"import sys\nsys.path.insert(0, {str(ROOT)!r})\n"
                                          "pytest_plugins = ['tests.nbval_tolerance']\n")
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval",
                             "--nbval-current-env", "-c", str(tmp_path / "pytest.ini"), str(tmp_path)],
                            capture_output=True, text=True, cwd=tmp_path, timeout=300)
    return result.returncode, result.stdout + result.stderr


def test_nbval_passes_drift_and_fails_real_changes(tmp_path):
    """End to end: committed outputs that differ from a fresh run in different ways."""
    _notebook(tmp_path / "drift.ipynb", [
        ("print(f'error {0.5573:.1%}')", "error 55.9%\n"),                 # float drift: passes
        ("print('hits', 81, 'of', 100)", "hits 81 of 100\n"),               # exact: passes
        ("print('hits', 81, 'of', 100)", "hits 79 of 100\n"),               # count changed: fails
        ("print(f'acc {0.79:.3f}')", "acc 0.830\n"),                        # real change: fails
        ("# NBVAL_TOLERANCE rtol=0.1: a widened cell\nprint(f'acc {0.79:.3f}')", "acc 0.830\n"),  # passes
        ("print('top', repr(' Paris'))", "top ' Rome'\n"),                   # token changed: fails
    ])
    code, output = _nbval(tmp_path)
    assert code == 1, output
    assert "3 failed, 3 passed" in output, output
    assert "Not within tolerance either: stdout: text differs" in output
    assert "0.79 differs from the committed 0.830" in output or "0.790 differs from the committed 0.830" in output
