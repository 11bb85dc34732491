"""Tests of the hand-written GradCAM reference and the map-evaluation helpers."""

import numpy as np
import pytest
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from xai_lesson.cam import (count_hooks, deletion_scores, gradcam, gradcam_feature_map, insertion_scores,
                             relevance_order)
from xai_lesson.training import SmallCNN


@pytest.fixture(scope="module")
def small():
    """A random-init CNN and an input whose CAMs are non-trivial for both classes.

    Both maps are positive over much of the 8 x 8 grid, and their peaks lie inside the grid,
    not on its border, so that every scaling step of the library matters.
    """
    torch.manual_seed(0)
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    return SmallCNN(width=8).eval(), x


@pytest.mark.parametrize("target", [0, 1])
def test_the_fixture_is_not_trivial(small, target):
    model, x = small
    cam = gradcam_feature_map(model, model.last_conv, x, target)
    assert (cam > 0).mean() > 0.1
    row, col = np.unravel_index(cam.argmax(), cam.shape)
    assert 0 < row < cam.shape[0] - 1 and 0 < col < cam.shape[1] - 1


def library_cam(model, layer, x, target):
    with GradCAM(model=model, target_layers=[layer]) as cam:
        return cam(input_tensor=x, targets=[ClassifierOutputTarget(target)])[0]


@pytest.mark.parametrize("target", [0, 1])
def test_gradcam_equals_the_library_on_a_small_cnn(small, target):
    model, x = small
    ours = gradcam(model, model.last_conv, x, target)
    assert ours.shape == (32, 32)
    assert np.abs(ours - library_cam(model, model.last_conv, x, target)).max() <= 1e-5


def test_gradcam_equals_the_library_on_a_real_layer():
    from xai_lesson.images import load_photo
    from xai_lesson.models import load_image_model

    classifier = load_image_model()
    x = classifier.preprocess(load_photo("coffee"))
    ours = gradcam(classifier.model, classifier.target_layer, x, 967)
    theirs = library_cam(classifier.model, classifier.target_layer, x, 967)
    assert np.abs(ours - theirs).max() <= 1e-5
    assert count_hooks(classifier.model) == 0


def test_feature_map_is_the_relu_of_the_gradient_weighted_sum(small):
    model, x = small
    cam = gradcam_feature_map(model, model.last_conv, x, 1)
    assert cam.shape == (8, 8) and (cam >= 0).all()
    # For this model the class score is linear in the pooled ReLU features, so the map
    # can be checked against the weights of the final layer directly.
    activation = model.last_conv(model.features[:-2](x))[0].detach()
    relu_mask = (activation > 0).float()
    positions = activation.shape[1] * activation.shape[2]
    gradient = model.classifier.weight[1].detach()[:, None, None] * relu_mask / positions
    expected = torch.relu((gradient.mean(dim=(1, 2))[:, None, None] * activation).sum(0)).numpy()
    np.testing.assert_allclose(cam, expected, rtol=1e-5, atol=1e-6)


def test_hooks_are_removed_even_after_an_error(small):
    model, x = small
    assert count_hooks(model) == 0
    gradcam(model, model.last_conv, x, 0)
    assert count_hooks(model) == 0
    with pytest.raises(ValueError, match="out of range"):
        gradcam(model, model.last_conv, x, 5)
    assert count_hooks(model) == 0


def test_library_cam_without_with_block_leaks_hooks(small):
    model, x = small
    cam = GradCAM(model=model, target_layers=[model.last_conv])
    assert count_hooks(model) == 2
    cam.activations_and_grads.release()
    assert count_hooks(model) == 0


@pytest.mark.parametrize("bad, message", [
    (dict(target=-1), "class index"),
    (dict(target=1.5), "class index"),
    (dict(x=torch.rand(2, 3, 32, 32)), "one image"),
    (dict(target_layer=torch.nn.Conv2d(3, 3, 1)), "layer of model"),
])
def test_clear_errors(small, bad, message):
    model, x = small
    arguments = dict(model=model, target_layer=model.last_conv, x=x, target=0) | bad
    with pytest.raises(ValueError, match=message):
        gradcam(**arguments)


def test_deletion_removes_the_chosen_pixels_first():
    class MeanOfTopLeft(torch.nn.Module):
        """Class 1's logit is the top-left pixel's value, so removing it changes only that class."""

        def forward(self, x):
            return torch.stack([torch.zeros(len(x)), 10 * x[:, 0, 0, 0]], dim=1)

    x = torch.ones(1, 3, 4, 4)
    cam = np.zeros((4, 4))
    cam[0, 0] = 1.0
    scores = deletion_scores(MeanOfTopLeft(), x, cam, 1, fractions=(0.0, 1 / 16))
    assert scores[0] > 0.99 and abs(scores[1] - 0.5) < 1e-6
    with pytest.raises(ValueError, match="upsample"):
        deletion_scores(MeanOfTopLeft(), x, np.zeros((2, 2)), 1)


def test_insertion_puts_the_chosen_pixels_back_first():
    class TopLeftMinusRest(torch.nn.Module):
        """Class 1's logit rises with the top-left pixel and falls with every other pixel."""

        def forward(self, x):
            top_left = x[:, 0, 0, 0]
            return torch.stack([torch.zeros(len(x)), 10 * top_left - (x[:, 0].sum(dim=(1, 2)) - top_left)], dim=1)

    x = torch.ones(1, 3, 4, 4)
    cam = np.arange(16, dtype=float).reshape(4, 4)[::-1, ::-1].copy()   # the top-left pixel ranks first
    scores = insertion_scores(TopLeftMinusRest(), x, cam, 1, fractions=(0.0, 1 / 16, 1.0))
    assert abs(scores[0] - 0.5) < 1e-6, "with nothing inserted the image is all fill: logits 0 and 0"
    assert scores[1] > 0.99, "the most relevant pixel was not put back first"
    assert scores[2] < 0.01, "with every pixel back the image is the original: logit 10 - 15"
    np.testing.assert_allclose(insertion_scores(TopLeftMinusRest(), x, cam, 1, fractions=(1.0,)),
                               deletion_scores(TopLeftMinusRest(), x, cam, 1, fractions=(0.0,)))
    with pytest.raises(ValueError, match="between 0 and 1"):
        insertion_scores(TopLeftMinusRest(), x, cam, 1, fractions=(0.5, 1.5))


def test_unrectified_feature_map_keeps_the_negative_part(small):
    model, x = small
    signed = gradcam_feature_map(model, model.last_conv, x, 0, rectify=False)
    rectified = gradcam_feature_map(model, model.last_conv, x, 0)
    assert (signed < 0).any(), "the fixture's signed map has no negative cell, so the test cannot fail"
    np.testing.assert_allclose(rectified, np.maximum(signed, 0), atol=1e-6)
    with pytest.raises(TypeError, match="rectify must be True"):
        gradcam_feature_map(model, model.last_conv, x, 0, rectify="no")


class Relu6Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU6(), torch.nn.Conv2d(4, 4, 3))
        self.act = torch.nn.ReLU6()
        self.fc = torch.nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.act(self.body(x)).mean(dim=(2, 3)))


def test_split_relu6_computes_the_same_and_lets_guided_backprop_work():
    from pytorch_grad_cam.guided_backprop import GuidedBackpropReLUModel
    from xai_lesson.cam import split_relu6

    torch.manual_seed(0)
    net = Relu6Net().eval()
    x = 4 * torch.randn(1, 3, 12, 12, generator=torch.Generator().manual_seed(1))   # some inputs above 6
    split = split_relu6(net)
    assert sum(isinstance(m, torch.nn.ReLU6) for m in split.modules()) == 0
    assert sum(isinstance(m, torch.nn.ReLU) for m in split.modules()) == 2
    assert sum(isinstance(m, torch.nn.ReLU6) for m in net.modules()) == 2, "the original model was changed"
    with torch.no_grad():
        assert torch.equal(split(x), net(x))
    # On the original the library finds no nn.ReLU and returns the plain gradient.
    plain = x.clone().requires_grad_(True)
    net(plain)[0, 1].backward()
    on_original = GuidedBackpropReLUModel(net, device="cpu")(x.clone(), 1)
    np.testing.assert_allclose(on_original, plain.grad[0].permute(1, 2, 0).numpy(), atol=1e-6)
    on_split = GuidedBackpropReLUModel(split, device="cpu")(x.clone(), 1)
    assert np.abs(on_split - on_original).max() > 0.1 * np.abs(on_original).max(), "guided backprop on the split model is still the plain gradient"
    with pytest.raises(TypeError, match="torch.nn.Module"):
        split_relu6("model")


def test_recalibrate_batchnorm_sets_the_batch_statistics_of_the_chosen_layers_only():
    from xai_lesson.cam import recalibrate_batchnorm

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4),
                              torch.nn.Conv2d(4, 4, 1), torch.nn.BatchNorm2d(4)).eval()
    images = 3 + 2 * torch.randn(8, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    kept = net[3].running_mean.clone()
    assert recalibrate_batchnorm(net, [net[0], net[1]], images) == 1
    features = net[0](images)
    torch.testing.assert_close(net[1].running_mean, features.mean(dim=(0, 2, 3)))
    torch.testing.assert_close(net[1].running_var, features.var(dim=(0, 2, 3), unbiased=True))
    assert torch.equal(net[3].running_mean, kept), "a layer outside `layers` was recalibrated"
    assert not net.training and not net[1].training and net[1].momentum == 0.1
    with torch.no_grad():                      # in evaluation mode the layer now normalises these images
        normalised = net[1](features)
    assert normalised.mean(dim=(0, 2, 3)).abs().max() < 1e-4
    with pytest.raises(ValueError, match="at least 2 images"):
        recalibrate_batchnorm(net, net[1], images[:1])
    with pytest.raises(TypeError, match="list of them"):
        recalibrate_batchnorm(net, ["conv"], images)


class TopHalfMean(torch.nn.Module):
    """Class 1's logit is 10 times the mean of the top half of the image, channel 0."""

    def forward(self, x):
        top = x[:, 0, : x.shape[2] // 2].mean(dim=(1, 2))
        return torch.stack([torch.zeros(len(x)), 10 * top], dim=1)


def test_tied_pixels_are_removed_in_a_random_order_not_from_the_top_row_down():
    # A map that is tied everywhere carries no order. A stable sort took tied pixels in
    # raster order, so deleting half of them blanked exactly the top half (logit 0, p = 0.5).
    x = torch.ones(1, 3, 16, 16)
    tied = np.zeros((16, 16))
    deleted = deletion_scores(TopHalfMean(), x, tied, 1, fractions=(0.5,))[0]
    assert deleted > 0.9, f"deleting half of a tied map emptied the top half (p = {deleted:.3f}): ties broken by position"
    inserted = insertion_scores(TopHalfMean(), x, tied, 1, fractions=(0.5,))[0]
    assert inserted < 0.999, f"inserting half of a tied map restored the whole top half (p = {inserted:.4f})"
    # the order among ties comes from the seed: reproducible, and another seed gives another order
    order = relevance_order(tied, seed=0)
    np.testing.assert_array_equal(order, relevance_order(tied, seed=0))
    assert not np.array_equal(order, relevance_order(tied, seed=1))
    assert sorted(order.tolist()) == list(range(256))
    # untied values still come first, whatever the seed
    ranked = tied.copy()
    ranked[15, 15], ranked[15, 14] = 2.0, 1.0
    assert relevance_order(ranked, seed=3)[:2].tolist() == [255, 254]


def test_insertion_can_start_from_a_canvas_such_as_a_blurred_image():
    x = torch.ones(1, 3, 4, 4)
    canvas = torch.full_like(x, -1.0)
    cam = np.arange(16, dtype=float).reshape(4, 4)
    model = TopHalfMean()
    start, full = insertion_scores(model, x, cam, 1, fractions=(0.0, 1.0), fill=canvas)
    np.testing.assert_allclose(start, torch.tensor([0.0, -10.0]).softmax(-1)[1].item(), rtol=1e-6)
    np.testing.assert_allclose(full, torch.tensor([0.0, 10.0]).softmax(-1)[1].item(), rtol=1e-6)
    # the top half ranks last in `cam`, so with half the pixels back the top half is still canvas
    assert insertion_scores(model, x, cam, 1, fractions=(0.5,), fill=canvas)[0] < 0.01
    assert deletion_scores(model, x, cam, 1, fractions=(0.5,), fill=canvas)[0] > 0.99
    with pytest.raises(ValueError, match="shaped like the image"):
        insertion_scores(model, x, cam, 1, fill=torch.zeros(1, 3, 2, 2))


def test_fast_road_imputer_equals_the_library_imputer():
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    from xai_lesson.cam import fast_road_imputer, rank_map

    generator = torch.Generator().manual_seed(0)
    img = torch.rand(3, 20, 24, generator=generator)
    for share in (0.2, 0.5, 0.8):
        mask = (torch.rand(20, 24, generator=generator) > share).float()
        np.testing.assert_allclose(fast_road_imputer(noise=0)(img, mask), NoisyLinearImputer(noise=0)(img, mask),
                                   atol=1e-5)
    ranks = rank_map(np.zeros((4, 4)), seed=0)
    assert sorted(ranks.ravel().tolist()) == [i / 15 for i in range(16)] or np.allclose(np.sort(ranks.ravel()),
                                                                                         np.arange(16) / 15)
