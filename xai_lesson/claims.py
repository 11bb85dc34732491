"""Claim checks: one visible line for each conclusion an episode draws from a number.

An episode's text says things like "IG's completeness error is under 1 %". The
notebook checks each such claim on the learner's machine, so that `make test`
fails when a claim stops holding (another CPU, another library version). The
checks are verification, not teaching, so they sit together in a cell tagged
``claims`` at the end of a section, and each prints one line::

    from xai_lesson import claims

    claims.expect(error < 0.01, "IG's completeness error is under 1 %", detail=f"{error:.1%}")
    # ✔ IG's completeness error is under 1 % (0.2%)

A claim that fails raises ``ClaimFailed`` (an ``AssertionError``) whose message
says which claim failed and why, so the cell stops with a readable line instead
of a bare ``assert`` traceback.

The learners' notebooks keep these cells, collapsed (``scripts/make_code_along.py``),
and ``scripts/lesson_check.py`` refuses a bare ``assert`` outside them.
"""

import numbers

import numpy as np

PASS, FAIL = "\N{HEAVY CHECK MARK}", "\N{HEAVY BALLOT X}"


class ClaimFailed(AssertionError):
    """A claim that an episode draws from a number did not hold in this run."""


def _truth(condition, claim):
    """``condition`` as a Python bool; refuse arrays of several values, whose truth is ambiguous."""
    if isinstance(condition, (bool, np.bool_)):
        return bool(condition)
    if hasattr(condition, "numel") and callable(condition.numel):      # a torch tensor
        if condition.numel() != 1:
            raise TypeError(f"claim {claim!r}: the condition is a tensor of {condition.numel()} values, not one "
                            "truth value; reduce it with .all() or .any()")
        return bool(condition.item())
    if isinstance(condition, np.ndarray):
        if condition.size != 1:
            raise TypeError(f"claim {claim!r}: the condition is an array of {condition.size} values, not one "
                            "truth value; reduce it with .all() or .any()")
        return bool(condition.item())
    if isinstance(condition, numbers.Number) or condition is None:
        raise TypeError(f"claim {claim!r}: the condition is {condition!r}, not a comparison; write the test "
                        "that must hold, for example `error < 0.01`")
    raise TypeError(f"claim {claim!r}: the condition is a {type(condition).__name__}, not a truth value")


def expect(condition, claim, detail=None):
    """Print ``✔ claim (detail)`` if ``condition`` holds; otherwise raise ``ClaimFailed``.

    ``claim`` is the sentence the episode asserts, written so that it reads as true
    ("the shuffled-label network hits the patch in over a third of the images").
    ``detail`` is the evidence, for example the measured value; print it only to the
    precision that holds on another CPU, or print the bound that is checked.
    """
    if not isinstance(claim, str) or not claim.strip():
        raise TypeError(f"a claim needs a sentence that says what holds, not {claim!r}")
    held = _truth(condition, claim)
    line = claim.strip() + (f" ({detail})" if detail not in (None, "") else "")
    if not held:
        raise ClaimFailed(f"{FAIL} This claim of the episode does not hold here: {line}")
    print(f"{PASS} {line}")
