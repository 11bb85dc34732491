"""The synthetic stripes data set and the scores that compare maps with its ground truth."""

import numpy as np
import pytest
import torch

from xai_lesson import synthetic


def test_shapes_labels_and_masks():
    images, labels, masks = synthetic.make_stripes_dataset(10, size=24, patch=5, seed=0)
    assert images.shape == (10, 3, 24, 24) and images.dtype == torch.float32
    assert labels.tolist() == [0, 1] * 5
    assert masks.shape == (10, 24, 24) and masks.dtype == torch.bool
    assert (masks.sum((1, 2)) == 25).all()
    assert 0.0 <= images.min() and images.max() <= 1.0


def test_same_seed_same_data_and_different_seed_different_data():
    a = synthetic.make_stripes_dataset(6, seed=3)
    b = synthetic.make_stripes_dataset(6, seed=3)
    c = synthetic.make_stripes_dataset(6, seed=4)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], c[0])


def test_the_patch_holds_the_class():
    images, labels, masks = synthetic.make_stripes_dataset(20, seed=1)
    for image, label, mask in zip(images, labels, masks):
        rows, cols = np.nonzero(mask.numpy())
        patch = image[:, rows.min():rows.max() + 1, cols.min():cols.max() + 1].sum(0)
        # Horizontal stripes change down the rows; vertical stripes change along the columns.
        down = (patch[1:] - patch[:-1]).abs().sum()
        across = (patch[:, 1:] - patch[:, :-1]).abs().sum()
        assert (across > down) == bool(label == 1)


def test_scores():
    masks = torch.zeros(2, 4, 4, dtype=torch.bool)
    masks[:, :2, :2] = True
    inside = masks.float()
    uniform = torch.ones(2, 4, 4)
    assert synthetic.mass_inside(inside, masks).tolist() == [1.0, 1.0]
    assert synthetic.mass_inside(uniform, masks) == pytest.approx(synthetic.area_share(masks))
    assert synthetic.area_share(masks).tolist() == [0.25, 0.25]
    outside = (~masks).float()
    assert synthetic.pointing_game(inside, masks).tolist() == [1.0, 1.0]
    assert synthetic.pointing_game(outside, masks).tolist() == [0.0, 0.0]
    # (N, C, H, W) attributions are summed in absolute value over channels.
    signed = torch.stack([inside, -inside], 1)
    assert synthetic.mass_inside(signed, masks).tolist() == [1.0, 1.0]
    assert synthetic.mass_inside(torch.zeros(2, 4, 4), masks).tolist() == [0.0, 0.0]


def test_pointing_game_shares_ties_instead_of_taking_the_first():
    # A 4 x 4 map whose largest value is a 2 x 2 block (as in occlusion), tied on all four pixels.
    # The block's top-left pixel (the one argmax would take) is OUTSIDE the mask, three pixels are inside.
    maps = torch.zeros(3, 4, 4)
    maps[:, 1:3, 1:3] = 5.0
    masks = torch.zeros(3, 4, 4, dtype=torch.bool)
    masks[0, 2:4, 1:4] = True          # two tied pixels inside
    masks[0, 1, 2] = True              # and a third
    masks[1, 1, 1] = True              # only the top-left pixel of the block: argmax would call this a hit
    masks[2, 0, 0] = True              # none
    scores = synthetic.pointing_game(maps, masks)
    assert scores.tolist() == [0.75, 0.25, 0.0]
    # The old, tie-unaware score (argmax = first tied pixel in raster order) gives 0, 1, 0: this test fails on it.
    first_peak = maps.flatten(1).argmax(1)
    assert masks.flatten(1)[torch.arange(3), first_peak].tolist() == [False, True, False]
    # It is the expected hit of breaking the tie at random.
    generator = torch.Generator().manual_seed(0)
    draws = [masks[0][tuple(torch.nonzero(maps[0] == 5.0)[torch.randint(4, (1,), generator=generator)][0])]
             for _ in range(2000)]
    assert abs(np.mean(draws) - 0.75) < 0.05
    # A map of zeros is tied everywhere and scores the mask's area share, the chance level.
    assert synthetic.pointing_game(torch.zeros(3, 4, 4), masks) == pytest.approx(synthetic.area_share(masks))
    # Signed (N, C, H, W) maps are scored on their absolute value summed over channels.
    signed = torch.stack([-maps, maps], 1)
    assert synthetic.pointing_game(signed, masks).tolist() == [0.75, 0.25, 0.0]


def test_bad_input_is_explained():
    with pytest.raises(ValueError, match="at most half"):
        synthetic.make_stripes_dataset(4, size=10, patch=6)
    with pytest.raises(ValueError, match="n must be an int"):
        synthetic.make_stripes_dataset(0)
    masks = torch.ones(2, 4, 4, dtype=torch.bool)
    with pytest.raises(ValueError, match="match"):
        synthetic.mass_inside(torch.ones(2, 5, 5), masks)
    with pytest.raises(TypeError, match="boolean"):
        synthetic.pointing_game(torch.ones(2, 4, 4), masks.float())
    with pytest.raises(ValueError, match="at least one True"):
        synthetic.mass_inside(torch.ones(2, 4, 4), torch.zeros(2, 4, 4, dtype=torch.bool))


def test_flat_head_cnn_memorises_random_labels_and_checks_its_input():
    from xai_lesson.training import accuracy, fit

    images, labels, _ = synthetic.make_stripes_dataset(128, size=16, patch=4, seed=0)
    random_labels = labels[torch.randperm(128, generator=torch.Generator().manual_seed(0))]
    torch.manual_seed(0)
    model = synthetic.FlatHeadCNN(width=8, size=16)
    assert model(images[:2]).shape == (2, 2)
    fit(model, images, random_labels, epochs=40, batch_size=32, lr=3e-3, seed=0)
    # The head sees every position, so the network fits labels that carry no information.
    assert accuracy(model, images, random_labels) >= 0.9
    with pytest.raises(ValueError, match="size=32"):
        model(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match="multiple of 4"):
        synthetic.FlatHeadCNN(size=30)
    with pytest.raises(ValueError, match="width"):
        synthetic.FlatHeadCNN(width=0)
