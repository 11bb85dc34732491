"""GradCAM written out by hand, and helpers to evaluate class activation maps.

The episode uses the pytorch-grad-cam package for its CAMs. ``gradcam`` is the
reference version the learners build by hand: it returns exactly what
``pytorch_grad_cam.GradCAM`` returns (same upsampling, same min-max scaling), so
the two can be compared to 1e-5.
"""

import numpy as np
import torch

from xai_lesson import validate


def count_hooks(model):
    """Number of forward, forward-pre and backward hooks registered on ``model`` and its submodules."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               + len(getattr(m, "_backward_pre_hooks", {})) for m in model.modules())


def _check(model, target_layer, x, target):
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    validate.module_of(target_layer, model, "target_layer (a layer of model, such as model.last_conv)")
    _check_image(x, model)
    validate.class_index(target)


def _check_image(x, model):
    if not torch.is_tensor(x) or x.ndim != 4 or x.shape[0] != 1:
        raise ValueError("x must be one image, a tensor of shape (1, C, H, W), got "
                         f"{tuple(x.shape) if torch.is_tensor(x) else type(x).__name__}.")
    validate.images(x, model)


def activations_and_gradients(model, target_layer, x, target):
    """The target layer's feature maps A for one image x, and the gradient dA of class ``target``'s score.

    Both are (channels, h, w) tensors, detached. A forward hook stores the layer's
    output and registers a tensor hook for its gradient; the hook is removed
    afterwards, even if something fails.
    """
    _check(model, target_layer, x, target)
    stored = {}

    def keep_activation(module, inputs, output):
        if not torch.is_tensor(output) or output.ndim != 4:
            shape = tuple(output.shape) if torch.is_tensor(output) else type(output).__name__
            raise ValueError(f"target_layer {type(module).__name__} outputs {shape}, but GradCAM needs a layer "
                             "whose output is a feature map (1, channels, h, w): choose a convolutional "
                             "layer, such as model.last_conv or classifier.target_layer.")
        stored["activation"] = output
        output.register_hook(lambda grad: stored.__setitem__("gradient", grad))

    handle = target_layer.register_forward_hook(keep_activation)
    try:
        with validate.kept_as_found(model), torch.enable_grad():  # the model's mode is restored afterwards
            model.eval()
            scores = model(x)
            validate.class_index(target, scores.shape[-1])
            torch.autograd.grad(scores[0, target], stored["activation"])
    finally:
        handle.remove()
    return stored["activation"].detach()[0], stored["gradient"].detach()[0]


def channel_weights(gradient):
    """GradCAM's weights: each channel's gradient (channels, h, w) averaged over the grid, one per channel."""
    if not torch.is_tensor(gradient) or gradient.ndim != 3:
        raise ValueError(f"gradient must be a (channels, h, w) tensor, got "
                         f"{tuple(gradient.shape) if torch.is_tensor(gradient) else type(gradient).__name__}.")
    return gradient.mean(dim=(1, 2))


def gradcam_feature_map(model, target_layer, x, target, rectify=True):
    """GradCAM at the target layer's resolution, before upsampling and scaling: a (h, w) array.

    Weights each feature map by the mean gradient of the class score over its
    positions, sums the weighted maps and keeps the positive part. With
    ``rectify=False`` it skips that ReLU and returns the signed map, which a
    randomisation test compares (a ReLU can blank a random network's map).
    """
    _check(model, target_layer, x, target)
    if not isinstance(rectify, bool):
        raise TypeError(f"rectify must be True (keep the positive part) or False (the signed map), got {rectify!r}.")
    activation, gradient = activations_and_gradients(model, target_layer, x, target)   # (channels, h, w)
    weights = channel_weights(gradient)                  # one weight per channel
    cam = (weights[:, None, None] * activation).sum(dim=0)
    if rectify:
        cam = torch.relu(cam)
    return cam.numpy().astype(np.float32)


def split_relu6(model):
    """A copy of ``model`` with every ``nn.ReLU6`` written as ``nn.ReLU`` followed by a clamp at 6.

    ReLU6(x) = min(max(x, 0), 6), so the copy computes exactly what the model does.
    pytorch-grad-cam's ``GuidedBackpropReLUModel`` changes the backward pass of
    ``nn.ReLU`` layers only; on a network built with ReLU6 (EfficientNet-Lite,
    MobileNet) it finds none and silently returns the plain gradient. On the copy it
    finds one ReLU per ReLU6. The model itself is not changed.
    """
    import copy

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    model = copy.deepcopy(model)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, torch.nn.ReLU6):
                setattr(parent, name, torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Hardtanh(0.0, 6.0)))
    return model


@torch.no_grad()
def recalibrate_batchnorm(model, layers, images):
    """Re-estimate the running statistics of every BatchNorm inside ``layers`` on ``images``.

    After a layer is re-initialised, its BatchNorm statistics are reset to mean 0
    and variance 1. In evaluation mode BatchNorm then passes its input on unscaled,
    and a stack of freshly initialised layers can shrink the signal until the
    output barely depends on the input. One forward pass in training mode with
    ``momentum=None`` sets each statistic to its average over ``images`` (N, C, H, W),
    as a freshly initialised network would normalise a batch. Other layers keep their
    statistics; the model is left in evaluation mode. Returns the number of BatchNorm
    layers recalibrated.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    if isinstance(layers, torch.nn.Module):
        layers = [layers]
    layers = list(layers)
    if not all(isinstance(layer, torch.nn.Module) for layer in layers):
        raise TypeError("layers must be a layer of the model or a list of them.")
    validate.images(images, model, "images")
    if images.shape[0] < 2:
        raise ValueError(f"images must be a batch (N, C, H, W) of at least 2 images, got {tuple(images.shape)}: "
                         "the statistics are averages over images.")
    norms = [m for layer in layers for m in layer.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    model.eval()
    saved_momentum = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None          # a cumulative average: one batch sets the statistics exactly
        norm.train()
    try:
        with torch.no_grad():         # running statistics update without a graph; a graph would hold every activation
            model(images)
    finally:
        for norm, momentum in zip(norms, saved_momentum):
            norm.momentum = momentum
        model.eval()
    return len(norms)


def scale_like_library(cam, size):
    """Min-max scale a (h, w) map to [0, 1], then resize it to ``size`` = (height, width) with OpenCV.

    This is what pytorch-grad-cam does to every map (its ``scale_cam_image`` helper).
    """
    import cv2

    cam = np.asarray(cam, dtype=np.float32)
    if cam.ndim != 2:
        raise ValueError(f"cam must be a 2-D map (h, w), got shape {cam.shape}.")
    validate.finite(cam, "cam")
    if len(size) != 2:
        raise ValueError(f"size must be (height, width), got {size!r}.")
    for side in size:
        validate.count(side, "each side of size")
    cam = cam - cam.min()
    cam = cam / (1e-7 + cam.max())
    cam = cv2.resize(cam, (int(size[1]), int(size[0])))   # OpenCV takes (width, height)
    # The library scales once more after averaging over target layers.
    cam = cam - cam.min()
    return (cam / (1e-7 + cam.max())).astype(np.float32)


def gradcam(model, target_layer, x, target):
    """GradCAM of class ``target`` for one image x (1, C, H, W): an (H, W) array in [0, 1].

    Equal to ``pytorch_grad_cam.GradCAM(model, [target_layer])(x, [ClassifierOutputTarget(target)])[0]``
    within float rounding. Removes its hooks afterwards, even if something fails.
    """
    return scale_like_library(gradcam_feature_map(model, target_layer, x, target), x.shape[-2:])


def relevance_order(cam, seed=0):
    """The pixels of ``cam`` (h, w) as flat indices, most relevant first, with ties broken at random.

    A stable sort would break ties by position, in raster order: a map whose pixels
    are tied (EigenCAM sets a third or more of its pixels to exactly 0) would then
    remove or restore its tied pixels from the top row down. Here tied pixels come
    in a random order drawn from ``seed``, so a tie carries no position.
    """
    values = np.asarray(validate.finite(cam, "cam"), dtype=np.float64)
    if values.ndim != 2 or values.size == 0:
        raise ValueError(f"cam must be one (h, w) map, got shape {values.shape}.")
    values = values.ravel()
    rng = np.random.default_rng(validate.count(seed, "seed", minimum=0))
    shuffle = rng.permutation(values.size)                         # a random order of the pixels...
    return shuffle[np.argsort(-values[shuffle], kind="stable")]     # ...kept among tied values


@torch.no_grad()
def _perturbation_scores(model, x, cam, target, fractions, fill, insert, seed=0):
    cam = np.asarray(cam, dtype=np.float64)
    _check_image(x, model)
    if cam.shape != tuple(x.shape[-2:]):
        raise ValueError(f"cam has shape {cam.shape}, but the image is {tuple(x.shape[-2:])}; "
                         "upsample the map to the image's size first.")
    validate.finite(cam, "cam")
    validate.class_index(target)
    fractions = np.asarray(fractions, dtype=float)
    if fractions.ndim != 1 or not len(fractions) or not ((fractions >= 0) & (fractions <= 1)).all():
        raise ValueError(f"fractions must be a non-empty list of numbers between 0 and 1, got {fractions}.")
    if torch.is_tensor(fill):     # a whole canvas, for example a blurred copy of the image
        if fill.shape != x.shape:
            raise ValueError(f"fill must be a number or a tensor shaped like the image {tuple(x.shape)}, "
                             f"got {tuple(fill.shape)}.")
        validate.finite(fill, "fill")
        canvas = fill.to(x.dtype)
    else:
        canvas = torch.full_like(x, validate.number(fill, "fill"))
    order = relevance_order(cam, seed)                    # most relevant first, ties in a random order
    start, source = (canvas, x) if insert else (x, canvas)
    # insert: start from the canvas and put the most relevant pixels of the image back;
    # delete: start from the image and replace the most relevant pixels by the canvas's.
    batch = start.repeat(len(fractions), 1, 1, 1)
    source = source[0].reshape(x.shape[1], -1)
    for i, fraction in enumerate(fractions):
        chosen = torch.from_numpy(order[:int(round(fraction * cam.size))])
        flat = batch[i].reshape(x.shape[1], -1)           # a view: writing to it changes the batch
        flat[:, chosen] = source[:, chosen]
    with validate.kept_as_found(model):
        model.eval()
        probabilities = model(batch).softmax(-1)
    validate.class_index(target, probabilities.shape[-1])
    return probabilities[:, target].numpy()


def deletion_scores(model, x, cam, target, fractions=(0.0, 0.05, 0.1, 0.2, 0.3, 0.5), fill=0.0, seed=0):
    """Probability of class ``target`` after the most relevant pixels are set to ``fill``.

    For each fraction f, the share f of pixels with the highest ``cam`` values
    is replaced (in every colour channel). ``fill`` is a number, or a tensor shaped
    like ``x`` whose pixels replace the image's. Tied ``cam`` values are ordered at
    random (``seed``), not by position. A faithful map makes the probability fall
    faster than a random map does. Returns an array, one value per fraction.
    """
    return _perturbation_scores(model, x, cam, target, fractions, fill, insert=False, seed=seed)


def insertion_scores(model, x, cam, target, fractions=(0.0, 0.05, 0.1, 0.2, 0.3, 0.5), fill=0.0, seed=0):
    """Probability of class ``target`` when only the most relevant pixels are kept.

    The mirror image of ``deletion_scores``: for each fraction f, every pixel is
    set to ``fill`` except the share f with the highest ``cam`` values. ``fill``
    may be a tensor shaped like ``x``, the canvas to start from: Petsiuk et al.
    (2018) start insertion from a blurred copy of the image. Ties as in
    ``deletion_scores``. A faithful map makes the probability rise faster than a
    random map does. Returns an array, one value per fraction.
    """
    return _perturbation_scores(model, x, cam, target, fractions, fill, insert=True, seed=seed)


def rank_map(cam, seed=0):
    """``cam`` (h, w) replaced by its ranks scaled to [0, 1]: 1 for the most relevant pixel, no ties.

    The order is ``relevance_order(cam, seed)``, so tied pixels get distinct ranks in a
    random order. Give this to a metric that thresholds the map (ROAD takes a percentile
    with ``<``): a map with many tied pixels would otherwise remove all or none of them.
    """
    values = np.asarray(cam, dtype=np.float64)
    ranks = np.empty(values.size)
    ranks[relevance_order(values, seed)] = np.arange(values.size - 1, -1, -1)
    return (ranks / max(values.size - 1, 1)).reshape(values.shape).astype(np.float32)


def _road_system(mask, img, neighbours):
    """The sparse system of ROAD's noisy linear imputation, built with whole-array operations.

    The same equations as ``pytorch_grad_cam.metrics.road.NoisyLinearImputer.setup_sparse_system``
    (each missing pixel equals the weighted mean of its eight neighbours), without its
    element-by-element sparse assignments, which dominate its run time."""
    from scipy.sparse import coo_matrix

    height, width = mask.shape
    known = mask.reshape(-1) > 0.5
    unknown = np.flatnonzero(~known)
    variable = np.full(height * width, -1)
    variable[unknown] = np.arange(len(unknown))
    row, column = np.divmod(unknown, width)
    rows, columns, values = [], [], []
    weight_sum = np.ones(len(unknown))
    flat = img.reshape(img.shape[0], -1)
    b = np.zeros((len(unknown), img.shape[0]))
    for (d0, d1), weight in neighbours:
        r, c = row + d0, column + d1
        inside = (r >= 0) & (c >= 0) & (r < height) & (c < width)
        weight_sum[~inside] -= weight
        ids = np.flatnonzero(inside)
        neighbour = r[inside] * width + c[inside]
        has_value = known[neighbour]
        b[ids[has_value]] -= weight * flat[:, neighbour[has_value]].T
        rows.append(ids[~has_value])
        columns.append(variable[neighbour[~has_value]])
        values.append(np.full(int((~has_value).sum()), weight))
    rows.append(np.arange(len(unknown)))
    columns.append(np.arange(len(unknown)))
    values.append(-weight_sum)
    A = coo_matrix((np.concatenate(values), (np.concatenate(rows), np.concatenate(columns))),
                   shape=(len(unknown), len(unknown)))
    return A.tocsc(), b


def fast_road_imputer(noise=0.01):
    """pytorch-grad-cam's ``NoisyLinearImputer`` with a faster set-up of the same linear system.

    Use it in the library's own ROAD classes, for example
    ``PerturbationConfidenceMetric(RemoveMostRelevantFirst(50, fast_road_imputer()))``.
    With ``noise=0`` it returns what the library's imputer returns (tests/test_cam.py)."""
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer, neighbors_weights
    from scipy.sparse.linalg import spsolve

    noise = validate.number(noise, "noise (the imputer's noise scale)", minimum=0)

    class FastNoisyLinearImputer(NoisyLinearImputer):
        def __call__(self, img, mask):
            flat = img.reshape(img.shape[0], -1)
            missing = np.flatnonzero(mask.reshape(-1).numpy() == 0)
            A, b = _road_system(mask.numpy(), img.numpy(), neighbors_weights)
            solution = torch.tensor(spsolve(A, b), dtype=torch.float).reshape(len(missing), -1)
            filled = flat.clone()
            filled[:, missing] = solution.t() + self.noise * torch.randn_like(solution.t())
            return filled.reshape_as(img)

    return FastNoisyLinearImputer(noise=noise)


def road_scores(model, images, cams, targets, percentile, seed=0):
    """ROAD (Rong et al., 2022) at one percentile, as the library's ``ROADCombined(percentiles=[percentile])``.

    Half of (drop when the least relevant pixels are imputed) minus (drop when the most
    relevant are), where "most relevant" are the pixels above the ``percentile``-th
    percentile of the map. The maps are first replaced by their ranks with random
    tie-breaking (``rank_map``), and the faster imputer does the same imputation.
    Returns one score per image; higher is better."""
    from pytorch_grad_cam.metrics.perturbation_confidence import (PerturbationConfidenceMetric,
                                                                  RemoveLeastRelevantFirst,
                                                                  RemoveMostRelevantFirst)

    if not 0 < validate.number(percentile, "percentile") < 100:
        raise ValueError(f"percentile must be a number strictly between 0 and 100 (a percentage), got {percentile!r}.")
    if len(cams) != len(images) or len(targets) != len(images):
        raise ValueError(f"images, cams and targets must have one entry per image, got {len(images)}, {len(cams)} "
                         f"and {len(targets)}.")
    ranked = np.stack([rank_map(cam, seed) for cam in cams])
    imputer = fast_road_imputer()
    # (drop_least - drop_most) / 2: the unperturbed score cancels, so it is not computed (return_diff=False)
    least = PerturbationConfidenceMetric(RemoveLeastRelevantFirst(percentile, imputer))(images, ranked, targets, model,
                                                                                        return_diff=False)
    most = PerturbationConfidenceMetric(RemoveMostRelevantFirst(percentile, imputer))(images, ranked, targets, model,
                                                                                      return_diff=False)
    return (least - most) / 2
