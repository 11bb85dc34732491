"""Checks for episode 02's code-along exercises: saliency maps."""

import torch

from .harness import ARRAY, Wrong, as_double, close, exercise


def tiny_smooth_cnn(seed=0):
    """A small convolutional classifier with smooth (tanh) activations, 3 classes, and two (1, 3, 5, 6) inputs.

    Smooth, so that the gradient changes all along an IG path and every quadrature rule
    gives a different answer: the IG check can tell the midpoint rule from the others."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = torch.nn.Sequential(
            torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Tanh(),
            torch.nn.Flatten(), torch.nn.Linear(4 * 5 * 6, 3))
        x = 2 * torch.randn(1, 3, 5, 6)        # large enough to bend the tanh along the path
        baseline = torch.randn(1, 3, 5, 6)
    return model.eval(), x, baseline


def _reference_vanilla_gradient(model, x, target):
    from xai_lesson.saliency import input_gradients
    return input_gradients(model, x, target)


def _input_gradient_of(model, x, score):
    """d score(model(x)) / d x for a function `score` of the logits (1, n_classes)."""
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(score(model(x)), x)
    return grad


@exercise("2.1", "vanilla_gradient", _reference_vanilla_gradient,
          "The gradient of the target logit, shaped like x, and the same on every call.",
          returns=ARRAY, fresh=lambda seed: (*tiny_smooth_cnn(seed)[:2], seed))
def check_vanilla_gradient(learner):
    model, x, _ = tiny_smooth_cnn()
    with torch.no_grad():
        logits = model(x)[0]
    target = int(logits.argsort()[1])          # neither the top class nor the last: a wrong class is caught
    want = _reference_vanilla_gradient(model, x, target)
    grads = [learner(model, x, target) for call in (1, 2)]   # twice on the same x: a gradient left on x shows up
    if x.requires_grad or x.grad is not None:
        if close(grads[1], 2 * want):
            raise Wrong("the second call returns twice the gradient: it adds to the gradient the first call "
                        "left on x", "work on a fresh copy, x = x.clone().requires_grad_(True), so every call "
                        "starts with no gradient")
        raise Wrong("your function switched on requires_grad on the caller's x (or left a gradient on it)",
                    "work on a fresh copy, x = x.clone().requires_grad_(True), so every call starts with no gradient")
    for grad in grads:
        shape = tuple(grad.shape)
        if shape != tuple(x.shape):
            if shape in [(1, 5, 6), (5, 6), (1, 1, 5, 6)]:
                raise Wrong(f"for an input of shape {tuple(x.shape)} it has shape {shape}: the colour channels are "
                            "summed or maxed away", "return the gradient itself, one number per pixel and colour "
                            "channel; the map (abs, summed over channels) is made later, to draw it")
            raise Wrong(f"for an input of shape {tuple(x.shape)} it has shape {shape}, not the input's shape",
                        "return x.grad for the copy of x you called backward through")
        if torch.is_tensor(grad) and grad.requires_grad:
            raise Wrong("the gradient is still attached to the graph (requires_grad=True)", "return x.grad.detach()")
        if close(grad, want):
            continue
        if close(grad, want.abs()) or close(grad, want.abs().amax(dim=1, keepdim=True).expand_as(want)):
            raise Wrong("the gradient has lost its sign", "return the signed gradient; the abs is taken "
                        "only to draw the map")
        if close(grad, _input_gradient_of(model, x, lambda out: out.sum())):
            raise Wrong("it is the gradient of the sum of all the logits",
                        "backpropagate the one score model(x)[0, target]")
        for other in range(logits.numel()):
            if other != target and close(grad, _reference_vanilla_gradient(model, x, other)):
                top = " (the top class)" if other == int(logits.argmax()) else ""
                raise Wrong(f"it is the gradient of class {other}'s logit{top}, not of class {target}'s",
                            "take the logit of the class you were given: model(x)[0, target]")
        if close(grad, _input_gradient_of(model, x, lambda out: torch.softmax(out, dim=1)[0, target])) or \
                close(grad, _input_gradient_of(model, x, lambda out: torch.log_softmax(out, dim=1)[0, target])):
            raise Wrong("it is the gradient of the softmax probability, not of the logit",
                        "explain the logit, model(x)[0, target], before any softmax")
        raise Wrong("it is not the gradient of the target logit with respect to x",
                    "x = x.clone().requires_grad_(True); model(x)[0, target].backward(); return x.grad.detach()")


def _reference_integrated_gradients_by_hand(model, x, target, baseline, steps, batch_size=4):
    from xai_lesson.saliency import integrated_gradients
    return integrated_gradients(model, x, target, baseline=baseline, steps=steps, batch_size=batch_size,
                                rule="midpoint")


def _path_gradients(model, x, target, baseline, alphas):
    """The target logit's gradient at each point baseline + alpha (x - baseline), stacked: (len(alphas), ...)."""
    path = baseline + torch.as_tensor(alphas, dtype=x.dtype).view(-1, *[1] * (x.ndim - 1)) * (x - baseline)
    return _input_gradient_of(model, path, lambda out: out[:, target].sum())


def _fresh_path(seed):
    """Another model, input and baseline; target class `seed`, 3 + seed steps in batches of 2."""
    model, x, baseline = tiny_smooth_cnn(seed)
    return model, x, seed, baseline, 3 + seed, 2


@exercise("2.2", "integrated_gradients_by_hand", _reference_integrated_gradients_by_hand,
          "It matches saliency.integrated_gradients, and with 128 steps its attributions add up to "
          "f(x) - f(baseline) within 0.1 %.",
          returns=ARRAY, fresh=_fresh_path)
def check_integrated_gradients_by_hand(learner):
    model, x, random_baseline = tiny_smooth_cnn()
    target, steps = 1, 6                       # 6 points in batches of 4: the last batch is a short one
    for baseline in (torch.zeros_like(x), random_baseline):
        got = learner(model, x.clone(), target, baseline.clone(), steps, batch_size=4)
        want = _reference_integrated_gradients_by_hand(model, x, target, baseline, steps)
        shape = tuple(got.shape)
        if shape != tuple(x.shape):
            if len(shape) == len(x.shape) and shape[0] == steps:
                raise Wrong(f"for an input of shape {tuple(x.shape)} and {steps} steps it has shape {shape}: "
                            "one map per point on the path", "average the gradients over the points, "
                            "dim 0, with .mean(0, keepdim=True)")
            raise Wrong(f"for an input of shape {tuple(x.shape)} it has shape {shape}, not the input's shape",
                        "average the path's gradients over dim 0 (the points) and multiply by (x - baseline)")
        if close(got, want):
            continue
        midpoints = (torch.arange(steps, dtype=torch.float64) + 0.5) / steps
        grads = _path_gradients(model, x, target, baseline, midpoints)
        mean_grad = grads.mean(0, keepdim=True)
        if close(got, mean_grad):
            raise Wrong("the result is the average gradient alone", "multiply it by (x - baseline)")
        if baseline.abs().sum() > 0 and close(got, mean_grad * x):
            raise Wrong("it multiplies by x, which is right only for a zero baseline",
                        "multiply by (x - baseline)")
        if close(got, grads.sum(0, keepdim=True) * (x - baseline)):
            raise Wrong(f"the result is {steps} times too large with {steps} steps: the gradients are summed",
                        "average them over the points with .mean(0)")
        if close(got, grads.mean() * (x - baseline)) or close(got, grads.mean(dim=(0, 1), keepdim=True)
                                                                * (x - baseline)):
            raise Wrong("the gradients are averaged over more than the path's points (dim 0)",
                        "average over dim 0 only, the points, with .mean(0, keepdim=True)")
        for name, alphas in [("both end points, torch.linspace(0, 1, steps)", torch.linspace(0, 1, steps)),
                             ("the baseline but not the input", torch.arange(steps) / steps),
                             ("the input but not the baseline", (torch.arange(steps) + 1) / steps),
                             ("both end points, torch.linspace(0, 1, steps + 1)", torch.linspace(0, 1, steps + 1))]:
            if close(got, _path_gradients(model, x, target, baseline, alphas.double()).mean(0, keepdim=True)
                      * (x - baseline)):
                raise Wrong(f"the points on the path include {name}: that is not the midpoint rule",
                            "put one point in the middle of each of the steps intervals, "
                            "alphas = (torch.arange(steps) + 0.5) / steps")
        if close(got, _path_gradients(model, x, target, baseline, midpoints[:4]).mean(0, keepdim=True)
                  * (x - baseline)):
            raise Wrong("only the first batch of points is used", "loop over every batch, "
                        "range(0, steps, batch_size), and keep the gradients of each")
        raise Wrong("the result is not (x - baseline) times the mean gradient at the midpoints of the path",
                    "compare your function, step by step, with the formula in the episode")
    # The property the episode checks next: completeness, on the reference with many steps.
    baseline = random_baseline
    got = learner(model, x.clone(), target, baseline.clone(), 128, batch_size=32)
    with torch.no_grad():
        delta = (model(x)[0, target] - model(baseline)[0, target]).item()
    error = abs(as_double(got).sum().item() - delta) / abs(delta)
    if error > 1e-3:
        raise Wrong(f"with 128 steps the attributions sum to {as_double(got).sum().item():.4f}, not to "
                    f"f(x) - f(baseline) = {delta:.4f}", "compare your function with the formula in the episode")
