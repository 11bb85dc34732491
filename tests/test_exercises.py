"""The code-along checks: each passes its reference and catches typical wrong answers with the right hint.

For every check: the reference passes; a stub that raises NotImplementedError is
"not done yet"; a function that crashes is summarised in one line; and at least
three typical wrong implementations each fail with the hint that fixes them.
Every check returns the learner's function only when it passed.
"""

import pytest
import torch

from xai_lesson import exercises
from xai_lesson.exercises import EXERCISES

CHECKS = {name: getattr(exercises, name) for name in EXERCISES}


def verdict(check, function, capsys):
    """(the printed line, the function the check returned)."""
    use = check(function)
    printed = capsys.readouterr().out
    assert printed.count("\n") == 1, f"a check prints one line, got: {printed!r}"
    return printed.strip(), use


@pytest.mark.parametrize("name", CHECKS)
def test_the_reference_passes(name, capsys):
    check = CHECKS[name]
    line, use = verdict(check, check.reference, capsys)
    assert line == check.exercise.correct(), line
    assert use is check.reference


@pytest.mark.parametrize("name", CHECKS)
def test_a_stub_is_not_done_yet_and_the_reference_carries_on(name, capsys):
    check = CHECKS[name]

    def stub(*args, **kwargs):
        raise NotImplementedError(f"Exercise {check.exercise.number}: write {check.exercise.function}; see the episode")

    line, use = verdict(check, stub, capsys)
    assert line == check.exercise.not_done()
    assert "not done yet" in line and "carries on with the reference" in line
    assert use is check.reference


@pytest.mark.parametrize("name", CHECKS)
def test_a_crash_is_one_line_with_the_error_and_no_traceback(name, capsys):
    check = CHECKS[name]

    def crashes(*args, **kwargs):
        return torch.ones(2, 3) @ torch.ones(2, 3)

    line, use = verdict(check, crashes, capsys)
    assert "not right yet: your function raised RuntimeError: mat1 and mat2 shapes cannot be multiplied" in line
    assert "Traceback" not in line and use is check.reference


@pytest.mark.parametrize("name", CHECKS)
def test_something_that_is_not_a_function_is_refused_politely(name, capsys):
    line, use = verdict(CHECKS[name], None, capsys)
    assert "is a NoneType, not a function" in line and use is CHECKS[name].reference


def test_every_exercise_has_its_number_function_and_stub():
    numbers = [e.number for e in EXERCISES.values()]
    assert len(numbers) == len(set(numbers))
    for name, registered in EXERCISES.items():
        assert name == "check_" + registered.function
        assert registered.stub() == (f'raise NotImplementedError("Exercise {registered.number}: write '
                                     f'{registered.function}; see the episode")')
        assert exercises.by_function(registered.function) is registered
    with pytest.raises(KeyError, match="register its check"):
        exercises.by_function("no_such_exercise")


def assert_wrong(check, function, hint, capsys):
    line, use = verdict(check, function, capsys)
    assert "not right yet" in line and hint in line, line
    assert use is check.reference


# ---------------------------------------------------------------- episode 04

def hooked(model, layer, x, class_index, *, remove=True, batch=False, all_scores=False, keep=None):
    """activations_and_gradients, with one mistake switched on."""
    stored = {} if keep is None else keep

    def hook(module, inputs, output):
        stored["A"] = output
        output.register_hook(lambda grad: stored.__setitem__("dA", stored.get("dA", 0) + grad))

    handle = layer.register_forward_hook(hook)
    scores = model(x)
    (scores.sum() if all_scores else scores[0, class_index]).backward()
    if remove:
        handle.remove()
    A, dA = stored["A"].detach(), stored["dA"].detach()
    return (A, dA) if batch else (A[0], dA[0])


def right_hooks(*args):
    return hooked(*args)


shared = {}


@pytest.mark.parametrize("mistake, hint", [
    (lambda *a: hooked(*a, remove=False), "call handle.remove()"),
    (lambda *a: hooked(*a, batch=True), "take the first (only) image with [0]"),
    (lambda *a: hooked(*a, all_scores=True), "call .backward() on the one score scores[0, class_index]"),
    (lambda *a: hooked(*a, keep=shared), "make a fresh dictionary for the stored tensors inside the function"),
    (lambda *a: tuple(t.requires_grad_() for t in hooked(*a)), "call .detach()"),
    (lambda *a: hooked(*a)[0], "end with `return A, dA`"),
])
def test_activations_and_gradients_catches(mistake, hint, capsys):
    shared.clear()
    assert_wrong(exercises.check_activations_and_gradients, mistake, hint, capsys)


def test_activations_and_gradients_accepts_a_right_answer_written_differently(capsys):
    line, use = verdict(exercises.check_activations_and_gradients, right_hooks, capsys)
    assert "correct" in line and use is right_hooks


@pytest.mark.parametrize("mistake, hint", [
    (lambda A, dA: dA.mean(dim=0), "average over the grid, dims (1, 2), and keep dim 0"),
    (lambda A, dA: dA.mean(dim=(0, 1)), "average over the grid, dims (1, 2), and keep dim 0"),
    (lambda A, dA: dA.sum(dim=(1, 2)), "with .mean(dim=(1, 2))"),
    (lambda A, dA: A.mean(dim=(1, 2)), "average the gradients dA, not A"),
    (lambda A, dA: dA.abs().mean(dim=(1, 2)), "no abs() or relu() before pooling"),
])
def test_gradcam_weights_catches(mistake, hint, capsys):
    assert_wrong(exercises.check_gradcam_weights, mistake, hint, capsys)


@pytest.mark.parametrize("mistake, hint", [
    (lambda A, w: (w[:, None, None] * A).sum(dim=0), "keep the positive part"),
    (lambda A, w: torch.relu(w[:, None, None] * A).sum(dim=0), "sum the weighted maps first, then apply the ReLU"),
    (lambda A, w: torch.relu((w[:, None, None] * A).mean(dim=0)), "sum the weighted maps with .sum(dim=0)"),
    (lambda A, w: torch.relu((w[:, None, None] * A).sum(dim=1)), "sum over dim 0, the channels"),
])
def test_gradcam_map_catches(mistake, hint, capsys):
    assert_wrong(exercises.check_gradcam_map, mistake, hint, capsys)


def test_a_check_leaves_the_notebooks_random_numbers_alone(capsys):
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    for check in CHECKS.values():
        check(check.reference)
    assert torch.equal(torch.rand(3), expected)
