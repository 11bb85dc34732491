"""A pytest plugin for nbval: printed floats may differ within a tolerance; everything else is exact.

Why: a float's last digits depend on the CPU's vector instructions and on the
number of threads (the order in which a sum is added up). Strict nbval failed on
a second machine of the same kind because third decimals moved (0.218 -> 0.215).
Regex sanitizers could only round every number to a fixed precision, which
hides real changes in small numbers and still fails at rounding boundaries. So
this plugin compares numbers as numbers:

- nbval's own strict comparison runs first. Only when it fails does this plugin
  look again, and it passes the cell only if every difference is a float within
  tolerance.
- A *float* is a number written with a decimal point or an exponent: ``0.215``,
  ``55.9%``, ``-3.``, ``2.3e-06``. Two floats agree when
  ``|a - b| <= atol + rtol * max(|a|, |b|) + u``, where ``u`` is one unit in the
  last digit either side printed (the rounding of the print itself).
- Everything else stays exact: integers (counts, shapes, indices), words, tokens
  and labels. Runs of white space compare as one space, because a wider number
  shifts the columns of a table.

Tolerances: ``DEFAULT`` for every notebook; a notebook may set its own in
``metadata.xai_lesson.nbval_tolerance`` (``{"rtol": ..., "atol": ...}``); one cell
may set its own with a comment line that must give the reason::

    # NBVAL_TOLERANCE rtol=0.1 atol=0.01: the CNN is retrained, and SGD amplifies rounding

The claims an episode draws from these numbers are guarded by ``assert``
statements in the notebooks, with margins of their own; this comparison only
checks that the printed numbers have not drifted.
"""

import math
import re
from collections import defaultdict

DEFAULT = {"rtol": 0.02, "atol": 0.002}
FLOAT = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?\d+[eE][-+]?\d+")
SPACE = re.compile(r"\s+")
CELL_MARKER = re.compile(r"^\s*#\s*NBVAL_TOLERANCE\b(.*)$", re.M)
SETTING = re.compile(r"^(rtol|atol)=([0-9.eE+-]+)$")


class ToleranceError(ValueError):
    """A malformed tolerance setting in a notebook."""


def last_digit_unit(text):
    """One unit in the last digit of a printed float: '0.215' -> 0.001, '2.3e-06' -> 1e-07."""
    mantissa, _, exponent = text.lower().partition("e")
    decimals = len(mantissa.split(".", 1)[1]) if "." in mantissa else 0
    return 10.0 ** (int(exponent or 0) - decimals)


def floats_agree(reference, test, rtol, atol):
    """Do two printed floats agree within the tolerance? Returns (ok, allowed difference)."""
    a, b = float(reference), float(test)
    allowed = atol + rtol * max(abs(a), abs(b)) + max(last_digit_unit(reference), last_digit_unit(test))
    return abs(a - b) <= allowed * (1 + 1e-9), allowed


def _split(text):
    """Split into (text parts with white space folded, floats as written)."""
    parts = FLOAT.split(text)
    return [SPACE.sub(" ", part) for part in parts], FLOAT.findall(text)


def texts_agree(reference, test, rtol, atol):
    """Compare two output strings. Returns None when they agree, else a sentence saying why not."""
    if reference == test:
        return None
    ref_parts, ref_floats = _split(reference)
    test_parts, test_floats = _split(test)
    if len(ref_floats) != len(test_floats) or ref_parts != test_parts:
        for ref_part, test_part in zip(ref_parts, test_parts):
            if ref_part != test_part:
                return f"text differs (not just floats): expected {ref_part.strip()[:80]!r}, got {test_part.strip()[:80]!r}"
        return f"the output has {len(test_floats)} floats where the notebook has {len(ref_floats)}"
    for ref_float, test_float in zip(ref_floats, test_floats):
        ok, allowed = floats_agree(ref_float, test_float, rtol, atol)
        if not ok:
            return (f"{test_float} differs from the committed {ref_float} by "
                    f"{abs(float(test_float) - float(ref_float)):.3g}, more than the "
                    f"{allowed:.3g} allowed (rtol={rtol:g}, atol={atol:g})")
    return None


def tolerance_for(notebook_metadata, cell_source):
    """The tolerance for one cell: the default, then the notebook's, then the cell's own."""
    tolerance = dict(DEFAULT)
    notebook_setting = dict((notebook_metadata or {}).get("xai_lesson", {}).get("nbval_tolerance", {}))
    unknown = set(notebook_setting) - set(DEFAULT)
    if unknown:
        raise ToleranceError(f"metadata.xai_lesson.nbval_tolerance has unknown keys {sorted(unknown)}; "
                             "use rtol and atol")
    tolerance.update({key: float(value) for key, value in notebook_setting.items()})
    markers = CELL_MARKER.findall(cell_source)
    if len(markers) > 1:
        raise ToleranceError("a cell may have one '# NBVAL_TOLERANCE' line, not several")
    if markers:
        settings, colon, reason = markers[0].partition(":")
        if not colon or not reason.strip():
            raise ToleranceError("'# NBVAL_TOLERANCE' needs a reason after a colon, e.g. "
                                 "'# NBVAL_TOLERANCE rtol=0.1: the network is retrained'")
        for item in settings.split():
            match = SETTING.match(item)
            if not match:
                raise ToleranceError(f"'# NBVAL_TOLERANCE' does not understand {item!r}; "
                                     "write rtol=NUMBER and/or atol=NUMBER")
            tolerance[match[1]] = float(match[2])
    for key, value in tolerance.items():
        if not (math.isfinite(value) and value >= 0):
            raise ToleranceError(f"{key} must be a non-negative number, got {value}")
    return tolerance


def _flatten(cell, outputs, skip):
    """Outputs as nbval compares them: for each key (stream name or MIME type), a list of strings."""
    from nbval.plugin import transform_streams_for_comparison

    flat = defaultdict(list)
    for output in transform_streams_for_comparison(outputs):
        for key, value in output.items():
            if key in skip:
                continue
            if key == "data":
                for data_key, data_value in value.items():
                    if data_key not in skip:
                        flat[data_key].append(cell.sanitize(data_value))
            else:
                flat[key].append(cell.sanitize(value))
    return flat


def outputs_agree(cell, test, ref, skip):
    """None when every output agrees within tolerance, else a sentence saying what differs."""
    tolerance = tolerance_for(cell.parent.nb.metadata, cell.cell.source)
    tested, committed = _flatten(cell, test, skip), _flatten(cell, ref, skip)
    if set(tested) != set(committed):
        return f"different kinds of output: {sorted(committed)} committed, {sorted(tested)} now"
    for key, committed_values in committed.items():
        if len(committed_values) != len(tested[key]):
            return f"{len(tested[key])} outputs of kind {key!r} where the notebook has {len(committed_values)}"
        for reference, value in zip(committed_values, tested[key]):
            if not (isinstance(reference, str) and isinstance(value, str)):
                if reference != value:
                    return f"output of kind {key!r} differs"
                continue
            problem = texts_agree(reference, value, **tolerance)
            if problem:
                return f"{key}: {problem}"
    return None


def pytest_configure(config):
    """Wrap nbval's comparison: strict first, then floats within tolerance."""
    try:
        from nbval.plugin import IPyNbCell
    except ImportError:  # nbval absent: nothing to wrap
        return
    if getattr(IPyNbCell.compare_outputs, "_with_tolerance", False):
        return
    strict = IPyNbCell.compare_outputs

    def compare_outputs(self, test, ref, skip_compare=None):
        if strict(self, test, ref, skip_compare):
            return True
        strict_report = list(self.comparison_traceback)
        try:
            problem = outputs_agree(self, test, ref, skip_compare or self.parent.skip_compare)
        except ToleranceError as error:
            problem = f"bad tolerance setting: {error}"
        if problem is None:
            self.comparison_traceback = []
            return True
        self.comparison_traceback = strict_report + [f"Not within tolerance either: {problem}"]
        return False

    compare_outputs._with_tolerance = True
    IPyNbCell.compare_outputs = compare_outputs
