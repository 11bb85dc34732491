"""Checks for episode 01's code-along exercises: introduction (FGSM and the iterated attack)."""

import torch

from .harness import TENSOR, Wrong, as_double, close, exercise


TINY_MEAN, TINY_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)   # ImageNet's: a step on normalised
                                                                      # inputs is visibly not epsilon


class _PixelClassifier(torch.nn.Module):
    """A small classifier on pixel values in [0, 1] (3 classes) that normalises them itself, like pixel_logits."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Tanh(),      # smooth: no pixel has a zero gradient
            torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(16, 3))
        self.register_buffer("mean", torch.tensor(TINY_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(TINY_STD).view(1, 3, 1, 1))

    def forward(self, pixels):
        return self.net((pixels - self.mean) / self.std)


class _CountedModel(torch.nn.Module):
    """Wraps a model and counts the calls, to tell whether the learner's function used the model it was given."""

    def __init__(self, model):
        super().__init__()
        self.model, self.calls = model, 0

    def forward(self, pixels):
        self.calls += 1
        return self.model(pixels)


def tiny_pixel_classifier(seed=0):
    """A small classifier on pixel values and a (1, 3, 6, 6) image in [0, 1] with pixels at and near 0 and 1."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = _PixelClassifier().eval()
        pixels = torch.rand(1, 3, 6, 6) * 0.6 + 0.2               # most pixels well inside [0, 1]
    pixels[0, :, 0, :3] = torch.tensor([0.0, 0.01, 1.0])          # some at or near the edges: the clamp matters
    pixels[0, :, 5, 3:] = torch.tensor([1.0, 0.99, 0.0])
    return model, pixels


def _loss_gradient(model, pixels, label, score=False):
    """The gradient of the cross-entropy loss of `label` (or of its logit) with respect to the pixel values."""
    pixels = pixels.clone().requires_grad_(True)
    logits = model(pixels)
    target = logits[0, label] if score else torch.nn.functional.cross_entropy(logits, torch.tensor([label]))
    gradient, = torch.autograd.grad(target, pixels)
    return gradient


def _reference_fgsm(model, pixels, label, epsilon):
    pixels = pixels.clone().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(model(pixels), torch.tensor([label]))
    gradient, = torch.autograd.grad(loss, pixels)
    return (pixels + epsilon * gradient.sign()).clamp(0, 1).detach()


def _reference_iterated_fgsm(model, pixels, label, epsilon, step, n_steps):
    adversarial = pixels.clone()
    for _ in range(n_steps):
        adversarial = _reference_fgsm(model, adversarial, label, step)
        adversarial = torch.clamp(adversarial, pixels - epsilon, pixels + epsilon)
    return adversarial


def _leaves_the_image_alone(pixels):
    """Raise Wrong if the learner's function left a gradient on the image it was given, or made it require grad.

    (The harness fails a function that changes the image's values.)"""
    if pixels.grad is not None:
        raise Wrong("the gradient of this call is left in pixels.grad, and the next call adds its own to it",
                    "differentiate a copy, pixels = pixels.clone().requires_grad_(True), "
                    "with torch.autograd.grad(loss, pixels)")
    if pixels.requires_grad:
        raise Wrong("the image you passed in now requires grad", "work on a copy: pixels.clone().requires_grad_(True)")


def _detached_image(result, pixels):
    shape = tuple(result.shape)
    if shape != tuple(pixels.shape):
        raise Wrong(f"it returns shape {shape} for an image of shape {tuple(pixels.shape)}",
                    "return the whole perturbed image, with the same shape as pixels")
    if result.requires_grad:
        raise Wrong("the result is still attached to the graph (requires_grad=True)", "end with .detach()")


@exercise("1.1", "fgsm", _reference_fgsm,
          "One step up the loss of `label`: every pixel moves by epsilon, or stops at 0 or 1.",
          returns=TENSOR, fresh=lambda seed: (*tiny_pixel_classifier(seed), seed % 3, 0.02 * seed))
def check_fgsm(learner):
    model, pixels = tiny_pixel_classifier()
    epsilon = 0.05
    inside = (pixels > 0.15) & (pixels < 0.85)                    # no clamp can bind here, for any sensible step
    for label in (0, 2, 0):                                       # the same image again: a left-over gradient adds up
        counted = _CountedModel(model)
        adversarial = learner(counted, pixels, label, epsilon)
        _leaves_the_image_alone(pixels)
        if counted.calls == 0:
            raise Wrong("it never calls `model`, the classifier it is given",
                        "compute the loss from model(pixels), not from pixel_logits or classifier.model")
        _detached_image(adversarial, pixels)
        want = _reference_fgsm(model, pixels, label, epsilon)
        if close(adversarial, want):
            continue
        gradient = _loss_gradient(model, pixels, label)
        if float(gradient.abs().min()) < 1e-6:
            raise AssertionError("the check's example has a zero gradient; its sign is not defined")
        step = epsilon * gradient.sign()
        if close(adversarial, pixels + step):
            raise Wrong("some pixel values leave [0, 1]", "clip the result to valid pixel values with .clamp(0, 1)")
        if close(adversarial, (pixels - step).clamp(0, 1)) or close(adversarial, pixels - step):
            raise Wrong("it steps down the loss of `label`, which makes the model more sure of it",
                        "add the step, pixels + epsilon * gradient.sign(): FGSM climbs the loss of the true class")
        score_step = epsilon * _loss_gradient(model, pixels, label, score=True).sign()
        if any(close(adversarial, (pixels + sign * score_step).clamp(0, 1)) for sign in (1, -1)):
            raise Wrong("it follows the gradient of the score (logit) of `label`, not of the loss",
                        "differentiate the loss, F.cross_entropy(model(pixels), torch.tensor([label]))")
        moved = (as_double(adversarial) - pixels.double()).abs()[0]          # (3, 6, 6): how far each pixel moved
        by_channel = [moved[c][inside[0, c]] for c in range(3)]
        if all(float(m.max() - m.min()) < 1e-5 for m in by_channel) and \
                not all(abs(float(m.max()) - epsilon) < 1e-5 for m in by_channel):
            sizes = ", ".join(f"{float(m.max()) / epsilon:.3f}" for m in by_channel)
            raise Wrong(f"the pixels of the three colour channels move by {sizes} x epsilon, not by epsilon: "
                        "the step was taken on normalised inputs",
                        "take the step on the pixel values in [0, 1], which `model` normalises itself "
                        "(epsilon on normalised inputs is epsilon x std in pixel values)")
        change = moved[inside[0]]
        if float(change.max() - change.min()) > 1e-5:
            raise Wrong(f"the pixels move by different amounts, from {float(change.min()):.2g} to "
                        f"{float(change.max()):.2g} for epsilon = {epsilon}",
                        "take gradient.sign(), so that every pixel moves by exactly epsilon")
        got = as_double(adversarial)
        if float(got.min()) < 0 or float(got.max()) > 1:
            raise Wrong("some pixel values leave [0, 1]", "clip the result to valid pixel values with .clamp(0, 1)")
        raise Wrong("some pixels move by epsilon, but not in the direction that raises the loss of `label`",
                    "differentiate F.cross_entropy(model(pixels), torch.tensor([label])) with respect to the "
                    "pixel values themselves (do not normalise them: model does) and add epsilon * gradient.sign()")


@exercise("1.2", "iterated_fgsm", _reference_iterated_fgsm,
          "n_steps FGSM steps of size `step`, each projected back to within epsilon of the original image.",
          returns=TENSOR, fresh=lambda seed: (*tiny_pixel_classifier(seed + 1), seed, 0.03, 0.02, 1 + seed))
def check_iterated_fgsm(learner):
    model, pixels = tiny_pixel_classifier(seed=1)
    # step * n_steps is more than epsilon, so the projection must bind; then a different budget and label.
    for label, epsilon, step, n_steps in [(0, 0.05, 0.02, 5), (2, 0.04, 0.03, 3)]:
        counted = _CountedModel(model)
        adversarial = learner(counted, pixels, label, epsilon, step, n_steps)
        _leaves_the_image_alone(pixels)
        if counted.calls == 0:
            raise Wrong("it never calls `model`, the classifier it is given",
                        "pass it on to every step: fgsm(model, adversarial, label, step)")
        _detached_image(adversarial, pixels)
        want = _reference_iterated_fgsm(model, pixels, label, epsilon, step, n_steps)
        if close(adversarial, want):
            continue

        def attack(*, project=True, at_end=False, restart=False, size=step, steps=n_steps, around_zero=False):
            """The iterated attack with one mistake switched on."""
            adversarial = pixels.clone()
            for _ in range(steps):
                adversarial = _reference_fgsm(model, pixels if restart else adversarial, label, size)
                if project and not at_end:
                    low, high = (-epsilon, epsilon) if around_zero else (pixels - epsilon, pixels + epsilon)
                    adversarial = torch.clamp(adversarial, low, high)
            return torch.clamp(adversarial, pixels - epsilon, pixels + epsilon) if at_end else adversarial

        if close(adversarial, attack(around_zero=True)):
            raise Wrong("the pixel values themselves are clipped to [-epsilon, epsilon], so the image is almost black",
                        "clip to the original's values plus or minus epsilon: "
                        "torch.clamp(adversarial, pixels - epsilon, pixels + epsilon)")
        if close(adversarial, attack(at_end=True)):
            raise Wrong("it projects only once, after the last step",
                        "clip inside the loop, after every step, so that each gradient is taken inside the budget")
        if close(adversarial, attack(restart=True)) or close(adversarial, attack(restart=True, project=False)):
            raise Wrong("every step starts again from the original image, so the steps do not add up",
                        "give each step the previous step's output: adversarial = fgsm(model, adversarial, label, step)")
        if close(adversarial, attack(size=epsilon)):
            raise Wrong("each step has size epsilon, not `step`", "call fgsm with the step size: fgsm(model, adversarial, label, step)")
        if any(close(adversarial, attack(steps=k)) for k in (n_steps - 1, n_steps + 1)):
            raise Wrong(f"it does not take n_steps = {n_steps} steps", "loop `for _ in range(n_steps):`")
        largest = float((as_double(adversarial) - pixels.double()).abs().max())
        if largest > epsilon + 1e-6:
            raise Wrong(f"a pixel moved by {largest:.3f}, more than epsilon = {epsilon} ({n_steps} steps of {step}): "
                        "the image is not brought back to within epsilon of the original",
                        "after each step, clip back to within epsilon of the original: "
                        "torch.clamp(adversarial, pixels - epsilon, pixels + epsilon)")
        raise Wrong(f"with epsilon = {epsilon}, step = {step} and n_steps = {n_steps} the image differs from the reference",
                    "repeat n_steps times: adversarial = fgsm(model, adversarial, label, step), then "
                    "adversarial = torch.clamp(adversarial, pixels - epsilon, pixels + epsilon)")
