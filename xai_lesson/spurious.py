"""A synthetic "Clever Hans" data set: shapes whose label also shows in a coloured corner tag.

Each image holds one object on a noisy background: a horizontal bar (class 0) or
a vertical bar (class 1), light grey to white, with a random length, thickness and position. A small tag in the top-left
corner is red or blue. How the tag's colour relates to the label is the point:

* ``cue="correlated"``: red for every horizontal bar and blue for every vertical bar. A model can
  reach full accuracy by looking only at the corner.
* ``cue="random"``: the tag's colour is drawn at random, independent of the label.
  This is the *shifted* test set, and the data to retrain on without the cue.
* ``cue="none"``: no tag at all.

The object and tag masks come with the images, so the share of an explanation's
mass that falls on each can be measured.
"""

from dataclasses import dataclass

import numpy as np
import torch

CUE_MODES = ("correlated", "random", "none")
CLASS_NAMES = ("horizontal bar", "vertical bar")
TAG_COLOURS = {"red": (1.0, 0.1, 0.1), "blue": (0.1, 0.2, 1.0)}


@dataclass
class ShapesData:
    """Images (N, 3, size, size) in [0, 1], labels (N,), and boolean masks (N, size, size)."""

    images: torch.Tensor
    labels: torch.Tensor
    object_masks: np.ndarray
    cue_masks: np.ndarray
    tag_is_blue: np.ndarray
    cue: str

    def __len__(self):
        return len(self.labels)


def make_shapes(n, cue="correlated", seed=0, size=32, tag_size=6, noise=0.15):
    """Generate ``n`` images (half horizontal, half vertical bars) with a corner tag set by ``cue``.

    The same arguments always give the same images. Objects never overlap the tag.
    """
    if cue not in CUE_MODES:
        raise ValueError(f"cue must be one of {CUE_MODES}, got {cue!r}.")
    if not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an int of at least 2 (one image per class), got {n!r}.")
    if size < 24:
        raise ValueError(f"size must be at least 24 pixels to fit a shape and the tag, got {size}.")
    if not 2 <= tag_size <= size // 4:
        raise ValueError(f"tag_size must be between 2 and size // 4 = {size // 4}, got {tag_size}.")
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    rng.shuffle(labels)
    images = np.clip(0.5 + noise * rng.standard_normal((n, 3, size, size)), 0, 1).astype(np.float32)
    object_masks = np.zeros((n, size, size), dtype=bool)
    cue_masks = np.zeros((n, size, size), dtype=bool)
    rows, cols = np.mgrid[0:size, 0:size]
    margin = tag_size + 2  # objects stay clear of the tag's corner
    if cue == "correlated":
        tag_is_blue = labels == 1
    else:
        tag_is_blue = rng.random(n) < 0.5
    for i in range(n):
        length = int(rng.integers(size // 3, size // 2 + 1))
        thickness = int(rng.integers(2, 4))
        extent = (thickness, length) if labels[i] == 0 else (length, thickness)
        while True:  # top-left corner of the bar, clear of the tag
            top = int(rng.integers(0, size - extent[0] + 1))
            left = int(rng.integers(0, size - extent[1] + 1))
            if top >= margin or left >= margin:
                break
        mask = ((rows >= top) & (rows < top + extent[0]) & (cols >= left) & (cols < left + extent[1]))
        images[i][:, mask] = rng.uniform(0.85, 1.0)  # a light grey to white bar
        object_masks[i] = mask
        if cue != "none":
            tag = (rows >= 1) & (rows < 1 + tag_size) & (cols >= 1) & (cols < 1 + tag_size)
            rgb = TAG_COLOURS["blue" if tag_is_blue[i] else "red"]
            images[i][:, tag] = np.asarray(rgb, dtype=np.float32)[:, None]
            cue_masks[i] = tag
    if cue == "none":
        tag_is_blue = np.zeros(n, dtype=bool)
    return ShapesData(torch.from_numpy(images), torch.from_numpy(labels).long(), object_masks,
                      cue_masks, np.asarray(tag_is_blue), cue)


def mass_share(cams, masks):
    """Share of each map's total mass that falls inside its mask, one value per image.

    ``cams`` (N, H, W) must be non-negative, like CAMs after their ReLU. Maps that
    are zero everywhere carry no mass and give NaN; average with ``np.nanmean``.
    """
    cams = np.asarray(cams, dtype=np.float64)
    masks = np.asarray(masks, dtype=bool)
    if cams.ndim != 3 or cams.shape != masks.shape:
        raise ValueError(f"cams and masks must both have shape (N, H, W), got {cams.shape} and {masks.shape}.")
    if (cams < 0).any():
        raise ValueError("cams must be non-negative (apply the ReLU or min-max scaling first).")
    total = cams.sum(axis=(1, 2))
    inside = (cams * masks).sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, inside / total, np.nan)
