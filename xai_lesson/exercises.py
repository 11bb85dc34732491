"""Checks for the code-along exercises: instant feedback for learners who work alone.

In an episode's notebook, each exercise is a function the learner writes. The
cell after it calls its check, for example::

    gradcam_weights = exercises.check_gradcam_weights(gradcam_weights)

A check runs the learner's function on small cases (seconds on a CPU), compares
it with the tested reference in this package and with properties the method must
satisfy, and prints ONE line:

- ``Exercise 4.2 gradcam_weights: correct. ...`` when it passes;
- ``Exercise 4.2 gradcam_weights: not right yet: <what is wrong>. Hint: <how to fix it>. ...``
  when it fails, including when the learner's code raises (the exception's type and
  message, never a traceback from inside torch);
- ``Exercise 4.2 gradcam_weights: not done yet. ...`` while the function still raises
  ``NotImplementedError`` (the stub in the learners' notebook).

It returns the function the rest of the notebook should use: the learner's if it
passed, the reference otherwise, so a learner who skips an exercise can carry on.

To add an exercise, write its check here with the ``@exercise`` decorator (see
CONTRIBUTING.md, "Code-along exercises"): the decorator registers it, so that
``scripts/make_code_along.py`` can write the stub and the expected "not done yet"
line into the learners' notebook.
"""

import functools
from dataclasses import dataclass

import numpy as np
import torch

CARRY_ON = "The notebook carries on with the reference version."


@dataclass(frozen=True)
class Exercise:
    """One code-along exercise: its number, the function the learner writes, and its check."""

    number: str          # "4.2": episode 04, second exercise
    function: str        # the name of the function the learner writes, e.g. "gradcam_weights"
    check: str           # the name of its check in this module, e.g. "check_gradcam_weights"
    success: str         # what the verdict adds when the function is right

    @property
    def label(self):
        return f"Exercise {self.number} {self.function}"

    def stub(self):
        """The line that replaces the solution's body in the learners' notebook."""
        return f'raise NotImplementedError("Exercise {self.number}: write {self.function}; see the episode")'

    def not_done(self):
        return f"{self.label}: not done yet. Write it above and run this cell again. {CARRY_ON}"

    def correct(self):
        return f"{self.label}: correct. {self.success}"

    def wrong(self, problem):
        return f"{self.label}: not right yet: {problem} {CARRY_ON}"


EXERCISES = {}          # check name -> Exercise, in the order they were registered


def by_function(name):
    """The registered exercise whose learner function is called ``name``."""
    for registered in EXERCISES.values():
        if registered.function == name:
            return registered
    raise KeyError(f"no exercise writes a function called {name!r}: register its check in "
                   "xai_lesson/exercises.py with @exercise(number, function, success).")


class Wrong(Exception):
    """Raised by a check's test when the learner's function is wrong: what is wrong, and a hint."""

    def __init__(self, what, hint):
        super().__init__(f"{what}. Hint: {hint}.")
        self.what, self.hint = what, hint


def exercise(number, function, reference, success):
    """Register a check for exercise ``number``, in which the learner writes ``function``.

    The decorated ``test(learner)`` raises ``Wrong(what, hint)`` or returns nothing;
    ``reference`` is the tested version the notebook uses when the learner's is not
    right; ``success`` is what the verdict says when it is. The registered check takes
    the learner's function and returns the one to use."""

    def register(test):
        name = "check_" + function
        registered = Exercise(number, function, name, success)
        if name in EXERCISES or any(e.number == number for e in EXERCISES.values()):
            raise ValueError(f"exercise {number} ({function}) is registered twice")
        EXERCISES[name] = registered

        @functools.wraps(test)
        def check(learner):
            verdict, use = judge(registered, test, learner, reference)
            print(verdict)
            return use

        check.__name__ = name
        check.__doc__ = (f"Check the learner's `{function}` (exercise {number}); print one line and return "
                         f"the function to use: the learner's if it is right, else the reference.")
        check.exercise = registered
        check.reference = reference
        return check

    return register


def judge(registered, test, learner, reference):
    """(verdict line, function to use) for one learner's function. Never raises."""
    if not callable(learner):
        return registered.wrong(f"`{registered.function}` is a {type(learner).__name__}, not a function. "
                                f"Hint: define it with `def {registered.function}(...)` and run that cell."), reference
    try:
        with torch.random.fork_rng():       # a check must not change the notebook's random numbers
            test(learner)
    except Wrong as problem:
        return registered.wrong(str(problem)), reference
    except NotImplementedError:
        return registered.not_done(), reference
    except Exception as error:              # the learner's code failed: summarise it, no traceback
        message = (str(error).strip().splitlines() or [""])[0][:200]
        return registered.wrong(f"your function raised {type(error).__name__}: {message}. Hint: run it on "
                                "the small example in the episode and read the error's last line."), reference
    return registered.correct(), learner


def _close(a, b, tol=1e-4):
    a, b = _tensor(a), _tensor(b)
    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=tol, atol=tol))


def _tensor(value):
    if torch.is_tensor(value):
        return value.detach().to(torch.float64)
    return torch.as_tensor(np.asarray(value, dtype=np.float64))


def _shape(value, name):
    if not (torch.is_tensor(value) or isinstance(value, np.ndarray)):
        raise Wrong(f"{name} is a {type(value).__name__}, not a tensor",
                    "return a torch tensor (or a NumPy array)")
    return tuple(value.shape)


# ---------------------------------------------------------------------------
# Episode 04: GradCAM
# ---------------------------------------------------------------------------

def tiny_cnn(seed=0):
    """A small convolutional classifier (3 classes) and its target layer, for the GradCAM checks."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = torch.nn.Sequential(
            torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(4, 6, 3, padding=1), torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(6, 3))
        x = torch.randn(1, 3, 5, 6)
    return model.eval(), model[2], x


def _reference_activations_and_gradients(model, layer, x, class_index):
    from xai_lesson.cam import activations_and_gradients
    return activations_and_gradients(model, layer, x, class_index)


def _reference_gradcam_weights(A, dA):
    from xai_lesson.cam import channel_weights
    return channel_weights(dA)


def _reference_gradcam_map(A, weights):
    return torch.relu((torch.as_tensor(weights)[:, None, None] * torch.as_tensor(A)).sum(dim=0))


@exercise("4.1", "activations_and_gradients", _reference_activations_and_gradients,
          "It returns the layer's feature maps and their gradients, (channels, h, w) each, and leaves no hook behind.")
def check_activations_and_gradients(learner):
    from xai_lesson.cam import count_hooks

    model, layer, x = tiny_cnn()
    for class_index in (0, 2, 2):              # twice the same class: a second call must give the same answer
        before = count_hooks(model)
        result = learner(model, layer, x, class_index)
        if count_hooks(model) > before:
            raise Wrong("a hook is still registered on the model after your function returned",
                        "keep the handle that register_forward_hook returns and call handle.remove() "
                        "(in a `finally:` block, so it runs even after an error)")
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise Wrong("it should return two things, (A, dA)", "end with `return A, dA`")
        A, dA = result
        want_A, want_dA = _reference_activations_and_gradients(model, layer, x, class_index)
        for name, got, want in [("A", A, want_A), ("dA", dA, want_dA)]:
            shape = _shape(got, name)
            if shape == (1, *want.shape):
                raise Wrong(f"{name} has shape {shape}, with the batch dimension",
                            "take the first (only) image with [0], to get (channels, h, w)")
            if shape != tuple(want.shape):
                raise Wrong(f"{name} has shape {shape}, not (channels, h, w) = {tuple(want.shape)}",
                            "store the output of the hooked layer itself, and its gradient")
            if torch.is_tensor(got) and got.requires_grad:
                raise Wrong(f"{name} is still attached to the graph (requires_grad=True)",
                            "call .detach() on what the hooks stored")
        if not _close(A, want_A):
            raise Wrong("A is not the hooked layer's output", "store `output` in the forward hook on `layer`")
        if not _close(dA, want_dA):
            everything = sum(_reference_activations_and_gradients(model, layer, x, c)[1] for c in range(3))
            if _close(dA, everything):
                raise Wrong("dA is the gradient of the sum of all class scores",
                            "call .backward() on the one score scores[0, class_index]")
            if _close(dA, 2 * want_dA) or _close(dA, want_dA + _reference_activations_and_gradients(
                    model, layer, x, 0)[1]):
                raise Wrong("dA adds up gradients from an earlier call",
                            "make a fresh dictionary for the stored tensors inside the function, and "
                            "keep the gradient the hook receives instead of adding to it")
            raise Wrong("dA is not the gradient of the class score with respect to A",
                        "register `output.register_hook(...)` inside the forward hook and backpropagate "
                        "scores[0, class_index]")


@exercise("4.2", "gradcam_weights", _reference_gradcam_weights,
          "One weight per channel: each channel's gradient averaged over the grid.")
def check_gradcam_weights(learner):
    generator = torch.Generator().manual_seed(0)
    A = torch.rand(5, 3, 4, generator=generator)                # 5 channels on a 3 x 4 grid
    dA = torch.randn(5, 3, 4, generator=generator)
    weights = learner(A.clone(), dA.clone())
    want = _reference_gradcam_weights(A, dA)
    shape = _shape(weights, "the result")
    if shape != (5,):
        if shape in [(3, 4), (5, 3), (5, 4), (3,), (4,)]:
            raise Wrong(f"for 5 channels on a 3 x 4 grid it has shape {shape}, not (5,): it pools over the wrong axes",
                        "average over the grid, dims (1, 2), and keep dim 0, the channels")
        raise Wrong(f"for 5 channels on a 3 x 4 grid it has shape {shape}, not one weight per channel (5,)",
                    "average dA over dims (1, 2)")
    if _close(weights, want):
        return
    if _close(weights, want * 12):
        raise Wrong("the weights are 12 times too large on a 3 x 4 grid: a sum, not a mean",
                    "average the gradient over the grid with .mean(dim=(1, 2))")
    if _close(weights, A.mean(dim=(1, 2))):
        raise Wrong("the weights are the averaged activations A", "average the gradients dA, not A")
    if _close(weights, dA.abs().mean(dim=(1, 2))) or _close(weights, torch.relu(dA).mean(dim=(1, 2))):
        raise Wrong("the negative gradients are lost", "average dA itself: no abs() or relu() before pooling")
    raise Wrong("the weights are not the channel means of dA", "return dA.mean(dim=(1, 2))")


@exercise("4.3", "gradcam_map", _reference_gradcam_map,
          "The weighted sum of the feature maps, with its negative part set to zero.")
def check_gradcam_map(learner):
    generator = torch.Generator().manual_seed(1)
    A = torch.rand(5, 3, 4, generator=generator)
    weights = torch.tensor([0.5, -1.0, 0.25, -0.1, 0.2])        # mixed signs: the ReLU matters
    cam = learner(A.clone(), weights.clone())
    want = _reference_gradcam_map(A, weights)
    shape = _shape(cam, "the map")
    if shape != (3, 4):
        raise Wrong(f"for 5 channels on a 3 x 4 grid it has shape {shape}, not (3, 4)",
                    "multiply A by weights[:, None, None] and sum over dim 0, the channels")
    if _close(cam, want):
        if not bool((want == 0).any()):
            raise AssertionError("the check's example has no negative region; it cannot test the ReLU")
        return
    raw = (weights[:, None, None] * A).sum(dim=0)
    if _close(cam, raw):
        raise Wrong("the map has negative values", "keep the positive part: torch.relu(...) of the weighted sum")
    if _close(cam, torch.relu(weights[:, None, None] * A).sum(dim=0)):
        raise Wrong("the ReLU is applied to each channel before the sum", "sum the weighted maps first, then apply the ReLU")
    if _close(cam, want / 5) or _close(cam, torch.relu(raw / 5)):
        raise Wrong("the map is 5 times too small with 5 channels: a mean over channels, not a sum",
                    "sum the weighted maps with .sum(dim=0)")
    raise Wrong("the map is not relu(sum over channels of weight * A)",
                "return torch.relu((weights[:, None, None] * A).sum(dim=0))")
