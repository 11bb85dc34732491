"""Saliency maps: which parts of the input push a model's output for one class.

Reference versions of the methods the saliency episode builds by hand. Each
function takes

* ``model``: a callable that maps a batch of inputs ``(N, ...)`` to scores
  ``(N, n_classes)``, usually logits. An ``nn.Module`` works, and so does a
  ``lambda`` (for example one that passes word embeddings to a text model as
  ``inputs_embeds``);
* ``x``: a float tensor with a leading batch dimension, such as ``(1, 3, H, W)``;
* ``target``: the class to explain, an int, or one int per row of ``x``;

and returns a tensor of attributions with the same shape as ``x``.

The methods:

* ``input_gradients``: the gradient of the target score (Simonyan et al. 2014);
* ``gradient_times_input``: that gradient multiplied by the input;
* ``smoothgrad``: gradients averaged over noisy copies of the input (Smilkov et al. 2017);
* ``integrated_gradients``: gradients averaged along a straight path from a
  baseline to the input, times (input - baseline) (Sundararajan et al. 2017);
  ``completeness_curve`` gives its completeness error against the number of steps;
* ``occlusion``: how much the score drops when a window of the input is
  replaced by a baseline value (Zeiler & Fergus 2014).
"""

import itertools
import math

import numpy as np
import torch

from xai_lesson import validate
from xai_lesson.images import one_image

RULES = ("midpoint", "trapezoid", "left", "right", "gausslegendre")


def _check_inputs(model, x, target):
    """Validate the common arguments; return the target as a long tensor with one entry per row."""
    if not callable(model):
        raise TypeError(f"model must be callable (an nn.Module or a function), got {type(model).__name__}.")
    validate.matching_dtype(x, model)
    if x.ndim < 2 or x.shape[0] < 1:
        raise ValueError(f"x needs a leading batch dimension, such as (1, 3, H, W); got shape {tuple(x.shape)}. "
                         "Add one with x.unsqueeze(0).")
    if x.ndim == 4:
        validate.images(x, model)
    validate.finite(x, "x (a map of it would be all zero or NaN)")
    return validate.class_indices(target, x.shape[0])


def _scores(model, x, target):
    """The model's output for each row's target class, as a 1-D tensor."""
    output = model(x)
    if not torch.is_tensor(output) or output.ndim != 2 or output.shape[0] != x.shape[0]:
        raise ValueError("model must return scores of shape (batch, n_classes); got "
                         f"{tuple(output.shape) if torch.is_tensor(output) else type(output).__name__} "
                         f"for a batch of {x.shape[0]}.")
    validate.class_indices(target, len(target), output.shape[1])
    return output.gather(1, target.to(output.device).unsqueeze(1)).squeeze(1)


def _check_batch_size(batch_size):
    if batch_size is not None:
        validate.count(batch_size, "batch_size (or None: all at once)")


def _gradients(model, inputs, target, batch_size=None):
    """Gradient of each row's target score with respect to that row, in batches of ``batch_size`` rows."""
    size = batch_size or len(inputs)
    grads = []
    for start in range(0, len(inputs), size):
        chunk = inputs[start:start + size].detach().clone().requires_grad_(True)
        with torch.enable_grad():
            scores = _scores(model, chunk, target[start:start + size])
            (grad,) = torch.autograd.grad(scores.sum(), chunk)
        grads.append(grad)
    return torch.cat(grads)


def input_gradients(model, x, target):
    """Vanilla gradient saliency: d score[target] / d x, shaped like ``x``.

    Assumes the model is differentiable and that a first-order (linear)
    approximation around ``x`` says which inputs matter.
    """
    target = _check_inputs(model, x, target)
    return _gradients(model, x, target)


def gradient_times_input(model, x, target):
    """Gradient x input: the gradient multiplied element-wise by ``x``, shaped like ``x``."""
    return input_gradients(model, x, target) * x.detach()


def smoothgrad(model, x, target, n_samples=25, noise_level=0.15, seed=0, batch_size=None):
    """SmoothGrad: the mean gradient over ``n_samples`` noisy copies of ``x``.

    The Gaussian noise has standard deviation ``noise_level * (max(x) - min(x))``,
    computed for each row of ``x``, as in Smilkov et al. (2017). The noise comes
    from a generator seeded with ``seed``, so the map is reproducible.
    ``batch_size`` caps how many noisy copies go through the model at once.
    """
    target = _check_inputs(model, x, target)
    validate.count(n_samples, "n_samples")
    if (isinstance(noise_level, bool) or not isinstance(noise_level, (int, float))
            or not math.isfinite(noise_level) or noise_level < 0):
        raise ValueError(f"noise_level must be a number >= 0 (a share of the input's range), got {noise_level!r}.")
    _check_batch_size(batch_size)
    x = x.detach()
    flat = x.reshape(len(x), -1)
    sigma = (noise_level * (flat.max(1).values - flat.min(1).values)).reshape(-1, *[1] * (x.ndim - 1))
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn((n_samples, *x.shape), generator=generator, dtype=x.dtype).to(x.device)
    noisy = (x.unsqueeze(0) + sigma.unsqueeze(0) * noise).reshape(-1, *x.shape[1:])
    grads = _gradients(model, noisy, target.repeat(n_samples), batch_size)
    return grads.reshape(n_samples, *x.shape).mean(0)


def _check_path_power(path_power):
    if (isinstance(path_power, bool) or not isinstance(path_power, (int, float)) or not math.isfinite(path_power)
            or path_power < 1):
        raise ValueError(f"path_power must be a number >= 1 (1: evenly spread points), got {path_power!r}.")


def _alphas(steps, rule, path_power=1):
    """Positions along the path (0 = baseline, 1 = input) and their quadrature weights.

    The ``rule`` spreads points u over [0, 1]; the points on the path are
    alpha = u ** path_power, with the weights multiplied by d alpha / d u, so
    the integral is unchanged while ``path_power > 1`` puts more points near the baseline.
    """
    alphas, weights = _rule_points(steps, rule)
    _check_path_power(path_power)
    if path_power != 1:
        weights = weights * path_power * alphas ** (path_power - 1)
        alphas = alphas ** path_power
    return alphas, weights


def _rule_points(steps, rule):
    validate.count(steps, "steps")
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}.")
    if rule == "midpoint":
        alphas = (torch.arange(steps, dtype=torch.float64) + 0.5) / steps
        weights = torch.full((steps,), 1.0 / steps, dtype=torch.float64)
    elif rule == "trapezoid":
        alphas = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)
        weights = torch.full((steps + 1,), 1.0 / steps, dtype=torch.float64)
        weights[0] = weights[-1] = 0.5 / steps
    elif rule == "gausslegendre":
        # Gauss-Legendre nodes and weights on [-1, 1], moved to [0, 1] (Captum's default rule).
        nodes, node_weights = np.polynomial.legendre.leggauss(steps)
        alphas = torch.from_numpy((nodes + 1) / 2)
        weights = torch.from_numpy(node_weights / 2)
    else:
        start = 0 if rule == "left" else 1
        alphas = (torch.arange(steps, dtype=torch.float64) + start) / steps
        weights = torch.full((steps,), 1.0 / steps, dtype=torch.float64)
    return alphas, weights


def _baseline_like(x, baseline, name="baseline"):
    if baseline is None:
        return torch.zeros_like(x)
    if isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
        if not math.isfinite(baseline):
            raise ValueError(f"{name} must be a finite number, got {baseline!r}.")
        return torch.full_like(x, float(baseline))
    if not torch.is_tensor(baseline):
        raise TypeError(f"{name} must be None, a number, or a tensor shaped like x; got {type(baseline).__name__}.")
    if not bool(torch.isfinite(baseline).all()):
        raise ValueError(f"{name} holds NaN or infinite values.")
    try:
        return torch.broadcast_to(baseline.to(x.dtype).to(x.device), x.shape).detach()
    except RuntimeError as error:
        raise ValueError(f"{name} of shape {tuple(baseline.shape)} cannot be broadcast to x's shape "
                         f"{tuple(x.shape)}.") from error


def integrated_gradients(model, x, target, baseline=None, steps=50, batch_size=None, rule="midpoint", path_power=1):
    """Integrated Gradients: (x - baseline) times the mean gradient along the straight path.

    The path integral is approximated with ``steps`` points and a quadrature
    ``rule``: "midpoint" (default; the middle of ``steps`` equal intervals),
    "trapezoid" (both ends, ``steps + 1`` points), "left", "right", or
    "gausslegendre" (Gauss-Legendre nodes, denser near both ends of the path;
    Captum's default, and much more accurate when the score changes steeply
    near the baseline or the input).
    ``path_power`` above 1 moves the points towards the baseline (alpha = u ** path_power,
    with matching weights): use it when the score rises steeply near the baseline, as it
    does for an ImageNet CNN and a grey baseline.
    The points along the path (for every row of ``x``) go through the model
    ``batch_size`` at a time (``None``: all at once). Each batch is built just
    before it is needed and its gradients are added to a running weighted sum
    at once, so memory holds one batch of points, not the whole path.

    A ``None`` baseline means zeros. By completeness, the attributions of one
    row sum to ``score(x) - score(baseline)`` up to the approximation error;
    ``completeness`` measures that error.
    """
    target = _check_inputs(model, x, target)
    _check_batch_size(batch_size)
    x = x.detach()
    baseline = _baseline_like(x, baseline)
    alphas, weights = _alphas(steps, rule, path_power)
    difference = x - baseline
    n_rows, n_points = len(x), len(alphas)
    # Point k of the flattened (points, rows) stack is row k % n_rows at alphas[k // n_rows].
    point_alphas = alphas.to(x.dtype).repeat_interleave(n_rows)
    point_weights = weights.to(x.dtype).repeat_interleave(n_rows)
    rows = torch.arange(n_rows).repeat(n_points)
    size = batch_size or n_rows * n_points
    weighted_sum = torch.zeros_like(x)
    shape = (-1,) + (1,) * (x.ndim - 1)
    for start in range(0, n_rows * n_points, size):
        chunk_rows = rows[start:start + size]
        chunk_alphas = point_alphas[start:start + size].to(x.device).reshape(shape)
        points = (baseline[chunk_rows] + chunk_alphas * difference[chunk_rows]).requires_grad_(True)
        with torch.enable_grad():
            scores = _scores(model, points, target[chunk_rows])
            (grad,) = torch.autograd.grad(scores.sum(), points)
        chunk_weights = point_weights[start:start + size].to(x.device).reshape(shape)
        weighted_sum.index_add_(0, chunk_rows.to(x.device), chunk_weights * grad)
    return weighted_sum * difference


def completeness_curve(model, x, target, steps=(4, 8, 16, 32), baseline=None, path_power=1, batch_size=None,
                       all_maps=False):
    """IG's completeness error for several numbers of steps, from one set of gradients.

    Uses the trapezoid rule, whose points for ``n`` steps are among those for
    ``2 n``: the gradients at the points for ``max(steps)`` serve every entry of
    ``steps``, each of which must divide ``max(steps)``. ``x`` holds one input
    (shape ``(1, ...)``). Only the gradient's component along the path,
    grad . (x - baseline), is kept for each point, so memory holds one batch.

    Returns ``(errors, attributions)``: a dict from each number of steps to the
    relative completeness error |sum(IG) - (f(x) - f(baseline))| / |f(x) - f(baseline)|,
    and the IG attributions for ``max(steps)`` (trapezoid rule, same ``path_power``).
    With ``all_maps=True`` the second item is instead a dict from each number of
    steps to its IG attributions, from the same gradients (at no extra cost), so that
    one can check whether the map itself has stopped changing, not only its sum.
    """
    target = _check_inputs(model, x, target)
    if x.shape[0] != 1:
        raise ValueError(f"completeness_curve takes one input, x of shape (1, ...); got {tuple(x.shape)}.")
    steps = sorted(set(steps)) if not isinstance(steps, int) else [steps]
    finest = steps[-1] if steps else 0
    if not steps or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 or finest % s for s in steps):
        raise ValueError(f"steps must be positive ints that each divide the largest one, got {steps!r}.")
    _check_batch_size(batch_size)
    x = x.detach()
    baseline = _baseline_like(x, baseline)
    u = torch.linspace(0.0, 1.0, finest + 1, dtype=torch.float64)
    difference = x - baseline
    _check_path_power(path_power)
    alphas = u ** path_power
    slopes = path_power * u ** (path_power - 1)  # d alpha / d u
    along_path = torch.zeros(finest + 1, dtype=torch.float64)
    gradient_sums = {n: torch.zeros_like(x) for n in steps}
    rule_weights = {n: _rule_points(n, "trapezoid")[1] for n in steps}
    size = batch_size or finest + 1
    for start in range(0, finest + 1, size):
        chunk = alphas[start:start + size].to(x.dtype).reshape((-1,) + (1,) * (x.ndim - 1))
        points = (baseline + chunk * difference).requires_grad_(True)
        with torch.enable_grad():
            scores = _scores(model, points, target.expand(len(points)))
            (grad,) = torch.autograd.grad(scores.sum(), points)
        along_path[start:start + len(points)] = (grad * difference).reshape(len(points), -1).sum(1).to(torch.float64)
        for n in (steps if all_maps else [finest]):
            every = finest // n
            index = torch.arange(start, start + len(points))
            on_grid = index % every == 0
            if not bool(on_grid.any()):
                continue
            weights = torch.zeros(len(points), dtype=torch.float64)
            weights[on_grid] = rule_weights[n][index[on_grid] // every] * slopes[index[on_grid]]
            gradient_sums[n] += (weights.to(x.dtype).reshape(chunk.shape) * grad).sum(0, keepdim=True)
    with torch.no_grad():
        delta = (_scores(model, x, target) - _scores(model, baseline, target)).to(torch.float64).item()
    errors = {}
    for n in steps:
        every = finest // n
        total = (rule_weights[n] * slopes[::every] * along_path[::every]).sum().item()
        errors[n] = abs(total - delta) / abs(delta)
    if all_maps:
        return errors, {n: gradient_sums[n] * difference for n in steps}
    return errors, gradient_sums[finest] * difference


@torch.no_grad()
def completeness(model, x, target, attributions, baseline=None):
    """How well attributions add up to ``score(x) - score(baseline)``, row by row.

    Returns a dict of 1-D tensors: ``sum`` (the attributions' sum per row),
    ``delta`` (score(x) - score(baseline)) and ``relative_error``
    (|sum - delta| / |delta|).
    """
    target = _check_inputs(model, x, target)
    if not torch.is_tensor(attributions) or attributions.shape != x.shape:
        raise ValueError("attributions must be a tensor shaped like x "
                         f"{tuple(x.shape)}, got {tuple(getattr(attributions, 'shape', ()))}.")
    baseline = _baseline_like(x, baseline)
    total = attributions.detach().reshape(len(x), -1).to(torch.float64).sum(1)
    delta = (_scores(model, x, target) - _scores(model, baseline, target)).to(torch.float64)
    return {"sum": total, "delta": delta, "relative_error": (total - delta).abs() / delta.abs()}


def _window_shape(x, window, name):
    """A window (or stride) with one entry per non-batch dimension of x.

    An int means a square over the last two dimensions. A tuple shorter than the
    number of non-batch dimensions applies to the last ones; the leading ones
    are covered whole (so (8, 8) on (1, 3, H, W) occludes all colour channels).
    """
    dims = x.shape[1:]
    if isinstance(window, int) and not isinstance(window, bool):
        window = (window, window) if len(dims) >= 2 else (window,)
    window = tuple(window)
    if not window or len(window) > len(dims) or not all(
            isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in window):
        raise ValueError(f"{name} must be a positive int or a tuple of at most {len(dims)} positive ints "
                         f"(for x of shape {tuple(x.shape)}), got {window!r}.")
    return tuple(dims[:len(dims) - len(window)]) + window


def _starts(size, window, stride):
    """Window start positions that cover every index, the last one flush with the end."""
    if window > size:
        raise ValueError(f"window {window} is larger than the input's dimension {size}.")
    starts = list(range(0, size - window + 1, stride))
    if starts[-1] != size - window:
        starts.append(size - window)
    return starts


@torch.no_grad()
def occlusion(model, x, target, window, stride, baseline=0.0, batch_size=16):
    """Occlusion: the drop in the target score when a window of ``x`` is replaced by ``baseline``.

    The window slides with ``stride`` over one input (``x`` of shape
    ``(1, ...)``). Each element gets the mean score drop over all windows that
    covered it, so the result is shaped like ``x``. ``window=8`` on an image
    ``(1, 3, H, W)`` hides 8 x 8 pixels in all channels at once. ``baseline`` is a
    number or a tensor shaped like ``x`` (for example a blurred copy).
    ``batch_size`` windows go through the model at once: lower it to save memory.
    """
    target = _check_inputs(model, x, target)
    if x.shape[0] != 1:
        raise ValueError(f"occlusion explains one input at a time: x must have shape (1, ...), got {tuple(x.shape)}.")
    _check_batch_size(batch_size)
    window = _window_shape(x, window, "window")
    stride_in = stride
    stride = _window_shape(x, stride, "stride")
    if len(stride) != len(window):
        raise ValueError(f"stride {stride_in!r} does not match window {window!r}.")
    if any(s > w for s, w in zip(stride, window)):
        raise ValueError(f"stride {stride_in!r} is larger than window {window!r}: the elements between two "
                         "windows would never be occluded and get no score (NaN). Use a stride no larger "
                         "than the window (stride == window tiles the input).")
    x = x.detach()
    fill = _baseline_like(x, baseline)
    dims = x.shape[1:]
    corners = list(itertools.product(*[_starts(d, w, s) for d, w, s in zip(dims, window, stride)]))
    reference = _scores(model, x, target)
    total = torch.zeros_like(x[0], dtype=torch.float64)
    count = torch.zeros_like(x[0], dtype=torch.float64)
    size = batch_size or len(corners)
    for begin in range(0, len(corners), size):
        chunk = corners[begin:begin + size]
        batch = x.repeat(len(chunk), *[1] * (x.ndim - 1))
        regions = [tuple(slice(c, c + w) for c, w in zip(corner, window)) for corner in chunk]
        for row, region in enumerate(regions):
            batch[row][region] = fill[0][region]
        drops = (reference - _scores(model, batch, target.expand(len(chunk)))).to(torch.float64)
        for drop, region in zip(drops, regions):
            total[region] += drop
            count[region] += 1
    return (total / count).unsqueeze(0).to(x.dtype)


def to_heatmap(attributions, absolute=True):
    """Collapse image attributions ``(1, C, H, W)`` or ``(C, H, W)`` to an ``H x W`` NumPy map.

    Sums over the colour channels, of absolute values when ``absolute`` is True
    (the usual way to show gradient maps), or of signed values otherwise.
    """
    attributions = one_image(attributions, "to_heatmap")
    validate.finite(attributions, "attributions")
    values = attributions.detach().abs() if absolute else attributions.detach()
    return values.sum(0).cpu().numpy()


def rank_correlation(map_a, map_b):
    """Spearman rank correlation between two maps of the same shape (flattened)."""
    from scipy.stats import spearmanr

    a = map_a.detach().cpu().numpy() if torch.is_tensor(map_a) else map_a
    b = map_b.detach().cpu().numpy() if torch.is_tensor(map_b) else map_b
    if a.shape != b.shape:
        raise ValueError(f"maps must have the same shape, got {a.shape} and {b.shape}.")
    a, b = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    validate.finite(a, "map_a")
    validate.finite(b, "map_b")
    for name, values in (("map_a", a), ("map_b", b)):
        if values.std() == 0:
            raise ValueError(
                f"{name} is constant (every value is {values[0]:g}), so it ranks nothing and a rank "
                "correlation with it is undefined. A constant map usually means the model no longer "
                "responds to its input: check that its outputs still vary across inputs before comparing maps.")
    return float(spearmanr(a, b).statistic)


def reinitialise(module, generator):
    """Re-draw ``module``'s weights as at construction and reset its BatchNorm statistics.

    Every sub-layer with ``reset_parameters`` gets fresh weights from PyTorch's own
    initialisation; every layer with ``reset_running_stats`` forgets its trained
    running mean and variance. The randomness comes from ``generator`` (a
    ``torch.Generator``), one stream for a whole cascade, so that two blocks of the
    same shape get different weights and a re-run gives the same ones. Returns ``module``.
    """
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}: "
                        "make one with torch.Generator().manual_seed(0) and pass it to every call of a cascade.")
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}.")
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for layer in module.modules():
            if hasattr(layer, "reset_parameters"):
                layer.reset_parameters()
            if hasattr(layer, "reset_running_stats"):
                layer.reset_running_stats()
    return module
