"""Tests of the Clever Hans shapes data set."""

import numpy as np
import pytest
import torch

from xai_lesson.spurious import TAG_COLOURS, make_shapes, mass_share


def test_same_seed_same_data_and_different_seed_different_data():
    a, b, c = make_shapes(20, seed=3), make_shapes(20, seed=3), make_shapes(20, seed=4)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, c.images)


def test_shapes_ranges_and_balance():
    data = make_shapes(40, cue="random", seed=0)
    assert data.images.shape == (40, 3, 32, 32) and data.images.dtype == torch.float32
    assert 0 <= data.images.min() and data.images.max() <= 1
    assert int(data.labels.sum()) == 20
    assert data.object_masks.shape == data.cue_masks.shape == (40, 32, 32)


def test_bars_have_the_orientation_of_their_class():
    data = make_shapes(30, cue="none", seed=1)
    for mask, label in zip(data.object_masks, data.labels):
        rows, cols = np.nonzero(mask)
        height, width = np.ptp(rows) + 1, np.ptp(cols) + 1
        assert (width > height) if label == 0 else (height > width)


def test_objects_never_touch_the_tag():
    data = make_shapes(200, cue="correlated", seed=2)
    assert not (data.object_masks & data.cue_masks).any()


def blue_tags(data):
    blue = torch.tensor(TAG_COLOURS["blue"])
    corner = data.images[:, :, 2, 2]
    return torch.isclose(corner, blue.expand_as(corner)).all(dim=1).numpy()


def test_correlated_tag_matches_label_and_random_tag_does_not():
    correlated = make_shapes(400, cue="correlated", seed=0)
    assert (blue_tags(correlated) == (correlated.labels.numpy() == 1)).all()
    shifted = make_shapes(400, cue="random", seed=0)
    agreement = (blue_tags(shifted) == (shifted.labels.numpy() == 1)).mean()
    assert 0.4 < agreement < 0.6


def test_no_cue_means_no_tag():
    data = make_shapes(10, cue="none", seed=0)
    assert not data.cue_masks.any()


@pytest.mark.parametrize("kwargs, message", [
    (dict(n=10, cue="sometimes"), "cue must be one of"),
    (dict(n=1), "at least 2"),
    (dict(n=10, size=16), "at least 24"),
    (dict(n=10, tag_size=20), "tag_size"),
])
def test_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_shapes(**kwargs)


def test_mass_share():
    cams = np.zeros((2, 4, 4))
    cams[0, 0, 0], cams[0, 3, 3] = 3.0, 1.0
    masks = np.zeros((2, 4, 4), dtype=bool)
    masks[:, 0, 0] = True
    shares = mass_share(cams, masks)
    assert shares[0] == pytest.approx(0.75) and np.isnan(shares[1])
    with pytest.raises(ValueError, match="non-negative"):
        mass_share(-cams, masks)
    with pytest.raises(ValueError, match="shape"):
        mass_share(cams[0], masks)
