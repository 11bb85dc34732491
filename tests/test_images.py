"""Photos, ImageNet labels and preprocessing."""

import numpy as np
import pytest
import torch

from xai_lesson import images


def test_labels_come_from_torchvision_metadata():
    labels = images.imagenet_labels()
    assert len(labels) == 1000
    assert labels[285] == "Egyptian cat" and labels[967] == "espresso"


@pytest.mark.parametrize("name", sorted(images.PHOTOS))
def test_every_bundled_photo_loads_offline(name):
    photo = images.load_photo(name)
    assert photo.mode == "RGB" and min(photo.size) >= 200


def test_unknown_photo_lists_the_choices():
    with pytest.raises(ValueError, match="Choose one of"):
        images.load_photo("dog")


def test_preprocess_gives_a_normalised_square_batch_of_one():
    x = images.preprocess(images.load_photo("rocket"), size=224)
    assert x.shape == (1, 3, 224, 224) and x.dtype == torch.float32
    assert -1.0 <= float(x.min()) and float(x.max()) <= 1.0


def test_unnormalise_inverts_preprocess():
    array = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    x = images.preprocess(array, mean=(0.4, 0.5, 0.6), std=(0.2, 0.3, 0.4))
    back = images.unnormalise(x, mean=(0.4, 0.5, 0.6), std=(0.2, 0.3, 0.4))
    np.testing.assert_allclose(back, array / 255.0, atol=1e-5)


@pytest.mark.parametrize("bad", [np.zeros((10, 10), dtype=np.uint8), np.zeros((10, 10, 3), dtype=np.float32)])
def test_preprocess_rejects_arrays_that_are_not_rgb_uint8(bad):
    with pytest.raises(ValueError, match="H x W x 3 uint8"):
        images.preprocess(bad)


def test_preprocess_rejects_other_types():
    with pytest.raises(TypeError, match="PIL image or a numpy array"):
        images.preprocess([1, 2, 3])


def test_unnormalise_rejects_a_batch():
    with pytest.raises(ValueError, match="takes one image"):
        images.unnormalise(torch.zeros(2, 3, 8, 8))
