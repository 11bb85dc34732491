"""The small CNN and its training loop."""

import pytest
import torch

from xai_lesson.training import SmallCNN, accuracy, fit


def bright_left_or_right(n=128, seed=0):
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 1, 16, 16, generator=generator) * 0.2
    labels = torch.arange(n) % 2
    images[labels == 1, :, :, :8] += 0.8
    images[labels == 0, :, :, 8:] += 0.8
    return images, labels


def test_small_cnn_learns_an_easy_task():
    images, labels = bright_left_or_right()
    model = SmallCNN(in_channels=1, width=8)
    losses = fit(model, images, labels, epochs=15, batch_size=32, seed=0)
    assert losses[-1] < losses[0] / 2
    assert accuracy(model, images, labels) > 0.95
    assert not model.training


def test_training_is_reproducible():
    images, labels = bright_left_or_right()
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = SmallCNN(in_channels=1, width=4)
        runs.append(fit(model, images, labels, epochs=2, seed=1))
    assert runs[0] == runs[1]


def test_last_conv_is_the_last_convolution():
    model = SmallCNN()
    convolutions = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert model.last_conv is convolutions[-1]
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 2)


def test_bad_shapes_are_explained():
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        fit(SmallCNN(), torch.zeros(4, 32, 32), torch.zeros(4))
    with pytest.raises(ValueError, match="one per input"):
        accuracy(SmallCNN(), torch.zeros(4, 3, 8, 8), torch.zeros(3))
    with pytest.raises(ValueError, match="n_classes >= 2"):
        SmallCNN(n_classes=1)
