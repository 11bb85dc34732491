"""Sanity checks for saliency maps (Adebayo et al. 2018).

The *model-randomisation test* re-initialises a trained network's layers
cumulatively, from the classifier down to the first convolution (the stem),
and asks whether a saliency method's maps change. A method whose maps survive
the destruction of the weights explains the image, not the model.

The helpers:

* ``EFFICIENTNET_LITE0_CASCADE``: the stages of the cascade for EfficientNet-Lite0,
  from the output layer to the stem (its seven resolution stages of blocks);
* ``randomisation_cascade``: yields the network after each stage, re-initialised
  with ``saliency.reinitialise`` from ONE generator, its BatchNorm statistics
  re-estimated on the images so that the random network stays live;
* ``logit_spread``: how much a network's logits vary across images, the liveness check;
* ``split_relu6`` and ``guided_backprop``: Guided Backpropagation (Springenberg et al.
  2015) through pytorch-grad-cam's ``GuidedBackpropReLUModel``;
* ``sobel_edges``: an edge map that depends on the image only, the model-free reference.
"""

import copy

import numpy as np
import torch
from torch import nn

from xai_lesson import validate
from xai_lesson.cam import recalibrate_batchnorm, split_relu6  # noqa: F401 (split_relu6 is part of this module's API)
from xai_lesson.saliency import reinitialise

# (stage name, sub-modules re-initialised at that stage), from the output towards the input.
EFFICIENTNET_LITE0_CASCADE = (
    ("classifier", ("_fc",)),
    ("conv head", ("_conv_head", "_bn1")),
    ("block 15", ("_blocks.15",)),
    ("blocks 11-14", ("_blocks.11", "_blocks.12", "_blocks.13", "_blocks.14")),
    ("blocks 8-10", ("_blocks.8", "_blocks.9", "_blocks.10")),
    ("blocks 5-7", ("_blocks.5", "_blocks.6", "_blocks.7")),
    ("blocks 3-4", ("_blocks.3", "_blocks.4")),
    ("blocks 1-2", ("_blocks.1", "_blocks.2")),
    ("block 0", ("_blocks.0",)),
    ("stem", ("_conv_stem", "_bn0")),
)


@torch.no_grad()
def logit_spread(model, x):
    """How much the logits vary across the images ``x``: the standard deviation over
    images of each logit, averaged over the classes.

    A network that gives every image the same logits (spread near 0) is dead:
    its gradients still exist, but a map of a dead network tests nothing.
    Needs at least two images.
    """
    validate.images(x, model)
    if len(x) < 2:
        raise ValueError(f"logit_spread compares images, so x needs at least two, got {len(x)}.")
    with validate.kept_as_found(model):
        model.eval()
        logits = model(x)
    return float(logits.std(0).mean())


def randomisation_cascade(model, x, stages=EFFICIENTNET_LITE0_CASCADE, generator=None,
                          recalibrate=True):
    """Re-initialise ``model``'s layers stage by stage, cumulatively; yield ``(stage, network)``.

    The first item is ``("original", copy of model)``. Then each stage in ``stages``
    (``(name, sub-module names)`` pairs, from the output towards the input) is
    re-initialised with ``saliency.reinitialise`` on top of all the stages before it.
    ``model`` itself is never changed: the cascade works on one deep copy, and each
    yielded network is that copy in its current state (copy it to keep it).

    PyTorch's default initialisation shrinks the signal a little in every layer,
    so a deep random network's logits hardly depend on its input. With
    ``recalibrate=True`` (the default), after each stage the running statistics of
    every re-initialised BatchNorm layer are re-estimated on the images ``x``,
    so each random layer passes on a signal of unit variance: the weights stay random,
    the network stays live. ``generator`` (a ``torch.Generator``) drives every
    re-initialisation; by default one seeded with 0.
    """
    validate.images(x, model)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}.")
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    network = copy.deepcopy(model).eval()
    names = {name for name, _ in network.named_modules()}
    for stage, layer_names in stages:
        missing = [name for name in layer_names if name not in names]
        if missing:
            raise ValueError(f"stage {stage!r} names sub-modules the model does not have: {missing}. "
                             "List the model's sub-modules with [name for name, _ in model.named_modules()].")
    yield "original", network
    randomised_batchnorms = []
    for stage, layer_names in stages:
        for name in layer_names:
            module = reinitialise(network.get_submodule(name), generator)
            randomised_batchnorms += [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if recalibrate and randomised_batchnorms:
            recalibrate_batchnorm(network, randomised_batchnorms, x)
        yield stage, network


def guided_backprop(model, x, target):
    """Guided Backpropagation maps for the images ``x``, with pytorch-grad-cam's guided ReLU.

    ``target`` is one class index or one per image. Returns a tensor shaped like ``x``.
    Guided Backpropagation lets only positive gradients flow back through each
    ReLU, where the ReLU's input was positive too. The model must use ``nn.ReLU``
    layers: call ``split_relu6`` first on a network built with ReLU6.

    pytorch-grad-cam's ``GuidedBackpropReLUModel`` explains one image per call. This
    swaps the ReLUs for the same library's ``GuidedBackpropReLUasModule`` (what that
    class does inside) and runs ONE backward pass for the whole batch, of the sum of
    each image's target logit. In eval mode the images do not interact and the guided
    ReLU acts element by element, so each image's gradient is the one a separate call
    gives (tests/test_sanity.py checks this against ``GuidedBackpropReLUModel``).
    """
    from pytorch_grad_cam.guided_backprop import GuidedBackpropReLUasModule
    from pytorch_grad_cam.utils.find_layers import replace_all_layer_type_recursive

    validate.images(x, model)
    if not any(isinstance(m, nn.ReLU) for m in model.modules()):
        raise ValueError("the model has no nn.ReLU layer, so GuidedBackpropReLUModel would change nothing and "
                         "return the plain gradient. If it uses nn.ReLU6, call split_relu6(model) first.")
    targets = validate.class_indices(target, len(x))
    # The ReLUs are swapped for guided ones and the model is switched to eval mode: all of that is
    # undone, after success or an error (kept_as_found restores the modules and the training flag).
    with validate.kept_as_found(model):
        model.eval()
        with torch.no_grad():
            validate.class_indices(targets, len(x), model(x[:1]).shape[-1])
        replace_all_layer_type_recursive(model, nn.ReLU, GuidedBackpropReLUasModule())
        inputs = x.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            chosen = model(inputs).gather(1, targets.view(-1, 1)).sum()
            (maps,) = torch.autograd.grad(chosen, inputs)
    return maps.detach().to(x.dtype)


def sobel_edges(images):
    """Edge strength of each image (Sobel filter on its grey version), as an (N, H, W) tensor.

    ``images`` is a float tensor ``(N, C, H, W)`` in any range. The map depends on
    the image only, never on a model: the reference a saliency map should not resemble too closely.
    """
    from skimage.filters import sobel

    validate.images(images, name="images")
    grey = images.detach().mean(1).cpu().numpy().astype(np.float64)
    return torch.from_numpy(np.stack([sobel(image) for image in grey]))
