"""The claim checks that notebooks print as one ✔ line per conclusion."""

import numpy as np
import pytest
import torch

from xai_lesson import claims


def test_a_claim_that_holds_prints_one_line(capsys):
    claims.expect(0.002 < 0.01, "IG's completeness error is under 1 %", detail="0.2%")
    assert capsys.readouterr().out == "\u2714 IG's completeness error is under 1 % (0.2%)\n"


@pytest.mark.parametrize("condition", [np.bool_(True), torch.tensor(True), np.array([True]), True])
def test_numpy_and_torch_truth_values_are_accepted(condition, capsys):
    claims.expect(condition, "it holds")
    assert capsys.readouterr().out == "\u2714 it holds\n"


def test_a_claim_that_fails_says_which_claim_and_why(capsys):
    with pytest.raises(AssertionError, match=r"does not hold here: the map beats chance \(0\.40 vs 0\.50\)"):
        claims.expect(np.float64(0.4) > 0.5, "the map beats chance", detail="0.40 vs 0.50")
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("condition, message", [
    (np.array([True, False]), "array of 2 values"),
    (torch.tensor([True, True]), "tensor of 2 values"),
    (0.5, "not a comparison"),
    (None, "not a comparison"),
    ("yes", "not a truth value"),
])
def test_an_ambiguous_condition_is_refused(condition, message):
    with pytest.raises(TypeError, match=message):
        claims.expect(condition, "some claim")


@pytest.mark.parametrize("claim", ["", "   ", None, 3])
def test_a_claim_needs_a_sentence(claim):
    with pytest.raises(TypeError, match="needs a sentence"):
        claims.expect(True, claim)
