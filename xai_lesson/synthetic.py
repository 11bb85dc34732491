"""A synthetic image data set with a known ground truth, and scores for saliency maps.

Each image is random clutter: noise and solid coloured squares. One small
*key patch* sits at a random place. Its stripes decide the class: horizontal
stripes for class 0, vertical stripes for class 1. Nothing else in the image
carries information about the class, so a faithful explanation must point at
the key patch, and the data set returns the patch's mask with every image.

The scores compare an attribution map with that mask:

* ``mass_inside``: the share of absolute attribution that falls inside the mask;
* ``pointing_game``: whether the map's largest value lies inside the mask, counted
  as the share of the tied largest values inside when several pixels tie;
* ``area_share``: the share a uniform map would get, the chance level.

``FlatHeadCNN`` is a small CNN without global pooling, which can memorise
random labels: the model for the data-randomisation test.
"""

import numpy as np
import torch
from torch import nn

CLASS_NAMES = ("horizontal stripes", "vertical stripes")


def _striped_patch(size, vertical, colour, rng):
    """A size x size x 3 patch of alternating stripes, one pixel wide, with a random phase."""
    phase = int(rng.integers(2))
    stripes = (np.arange(size) + phase) % 2
    pattern = np.tile(stripes, (size, 1)) if vertical else np.tile(stripes[:, None], (1, size))
    return pattern[..., None] * colour[None, None, :]


def make_stripes_dataset(n, size=32, patch=6, n_distractors=4, seed=0):
    """``n`` clutter images whose class is set by the stripes of one hidden patch.

    Returns ``(images, labels, masks)``:

    * ``images``: float tensor ``(n, 3, size, size)`` with values in [0, 1];
    * ``labels``: long tensor ``(n,)``, alternating 0 and 1 (0 = horizontal, 1 = vertical);
    * ``masks``: bool tensor ``(n, size, size)``, True on the key patch.

    The same ``seed`` always gives the same images. Distractors are solid
    squares of the same size in random colours; they may overlap the key patch
    partly, but are drawn first so the patch stays intact.
    """
    for name, value, low in (("n", n, 1), ("size", size, 8), ("patch", patch, 2), ("n_distractors", n_distractors, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}.")
    if patch > size // 2:
        raise ValueError(f"patch ({patch}) must be at most half the image size ({size}); "
                         "make the patch smaller or the images larger.")
    rng = np.random.default_rng(seed)
    images = np.empty((n, size, size, 3), dtype=np.float32)
    masks = np.zeros((n, size, size), dtype=bool)
    labels = np.arange(n) % 2
    for i in range(n):
        image = rng.uniform(0.0, 0.3, size=(size, size, 3))
        for _ in range(n_distractors):
            top, left = rng.integers(0, size - patch + 1, size=2)
            image[top:top + patch, left:left + patch] = rng.uniform(0.2, 1.0, size=3)
        top, left = rng.integers(0, size - patch + 1, size=2)
        colour = rng.uniform(0.5, 1.0, size=3)
        image[top:top + patch, left:left + patch] = _striped_patch(patch, labels[i] == 1, colour, rng)
        masks[i, top:top + patch, left:left + patch] = True
        images[i] = image
    return (torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
            torch.from_numpy(labels).long(), torch.from_numpy(masks))


def _maps_and_masks(maps, masks):
    """Turn attributions into non-negative (N, H, W) maps, checked against (N, H, W) masks."""
    maps = maps.detach() if torch.is_tensor(maps) else torch.as_tensor(np.asarray(maps))
    masks = masks if torch.is_tensor(masks) else torch.as_tensor(np.asarray(masks))
    if maps.ndim == 4:  # (N, C, H, W): sum absolute values over channels
        maps = maps.abs().sum(1)
    if maps.ndim != 3 or masks.ndim != 3 or maps.shape != masks.shape:
        raise ValueError("need maps of shape (N, H, W) or (N, C, H, W) and masks of shape (N, H, W) that "
                         f"match; got {tuple(maps.shape)} and {tuple(masks.shape)}.")
    if not bool(torch.isfinite(maps).all()):
        raise ValueError("maps hold NaN or infinite values, which would score as no attribution at all: "
                         "find where the NaN comes from (e.g. occlusion with a stride larger than its window).")
    if masks.dtype != torch.bool:
        raise TypeError(f"masks must be boolean (True inside the true region), got {masks.dtype}.")
    if not bool(masks.flatten(1).any(1).all()):
        raise ValueError("every mask needs at least one True pixel.")
    return maps.abs().to(torch.float64), masks


def mass_inside(maps, masks):
    """Share of each map's absolute attribution inside its mask: a float array of shape (N,).

    A map with no attribution at all scores 0.
    """
    maps, masks = _maps_and_masks(maps, masks)
    total = maps.flatten(1).sum(1)
    inside = (maps * masks).flatten(1).sum(1)
    return torch.where(total > 0, inside / total.clamp(min=1e-300), 0.0).numpy()


def pointing_game(maps, masks):
    """For each map, whether its largest absolute value falls inside the mask: a float array (N,) in [0, 1].

    A map often has several pixels tied at its largest value: every pixel of an
    occlusion block gets the same score, and a map of zeros is tied everywhere.
    ``argmax`` would take the first tied pixel in raster order (a block's top-left
    corner), so the score would depend on where the tie sits, not on the map. Here a
    hit counts the *share of the tied peak pixels* that lie inside the mask: 1 or 0
    when the peak is unique, and, with ties, exactly the expected hit of breaking the
    tie uniformly at random (with no seed to choose). A map of zeros therefore scores
    the mask's area share, the chance level. Ties are exact equality: two values that
    differ in their last bit are different values.
    """
    maps, masks = _maps_and_masks(maps, masks)
    flat = maps.flatten(1)
    peaks = flat == flat.amax(1, keepdim=True)                     # every pixel tied at the largest value
    inside = (peaks & masks.flatten(1)).sum(1)
    return (inside.double() / peaks.sum(1).double()).numpy()


def area_share(masks):
    """The share of pixels inside each mask: what a uniform map would score with ``mass_inside``."""
    masks = masks if torch.is_tensor(masks) else torch.as_tensor(np.asarray(masks))
    if masks.ndim != 3 or masks.dtype != torch.bool:
        raise ValueError(f"masks must be a boolean tensor of shape (N, H, W), got {tuple(masks.shape)} {masks.dtype}.")
    return masks.flatten(1).float().mean(1).double().numpy()


class FlatHeadCNN(nn.Module):
    """Two 3x3 convolution blocks, then a linear classifier on the flattened feature map.

    Unlike ``training.SmallCNN``, it has no global pooling: the classifier has one
    weight per feature, channel *and position*, so the network can memorise the
    labels of a few hundred images even when they are random. That is what the
    data-randomisation test (Adebayo et al. 2018) needs: a model trained on
    shuffled labels that has fitted them, not one that learned nothing.
    """

    def __init__(self, in_channels=3, n_classes=2, width=16, size=32):
        super().__init__()
        for name, value, low in (("in_channels", in_channels, 1), ("n_classes", n_classes, 2),
                                 ("width", width, 1), ("size", size, 4)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}.")
        if size % 4:
            raise ValueError(f"size must be a multiple of 4 (two 2x2 poolings), got {size}.")
        self.size = size
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(2 * width * (size // 4) ** 2, n_classes))

    def forward(self, x):
        if x.ndim != 4 or tuple(x.shape[2:]) != (self.size, self.size):
            raise ValueError(f"FlatHeadCNN was built for images of {self.size} x {self.size} (N, C, H, W), "
                             f"got shape {tuple(x.shape)}; build it with size={x.shape[-1]}.")
        return self.classifier(self.features(x))
