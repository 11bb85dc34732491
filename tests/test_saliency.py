"""Reference saliency methods: shapes, completeness, batching and errors on bad input."""

import numpy as np
import pytest
import torch
from torch import nn

from xai_lesson import saliency


def small_net(seed=0):
    """A tiny random-init CNN with smooth activations (so IG converges quickly)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Tanh(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(16, 3)).eval()


def image(seed=1, n=1):
    return torch.randn(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("method", [
    lambda m, x, t: saliency.input_gradients(m, x, t),
    lambda m, x, t: saliency.gradient_times_input(m, x, t),
    lambda m, x, t: saliency.smoothgrad(m, x, t, n_samples=4),
    lambda m, x, t: saliency.integrated_gradients(m, x, t, steps=8),
    lambda m, x, t: saliency.occlusion(m, x, t, window=3, stride=2),
], ids=["gradient", "gradient_x_input", "smoothgrad", "ig", "occlusion"])
def test_attributions_are_shaped_like_the_input(method):
    x = image()
    attribution = method(small_net(), x, 2)
    assert attribution.shape == x.shape
    assert torch.isfinite(attribution).all() and attribution.abs().sum() > 0


def test_gradient_of_a_linear_model_is_its_weight_row():
    linear = nn.Linear(6, 3)
    x = torch.randn(2, 6)
    gradient = saliency.input_gradients(linear, x, 1)
    assert torch.allclose(gradient, linear.weight[1].expand(2, -1))
    times_input = saliency.gradient_times_input(linear, x, 1)
    assert torch.allclose(times_input.sum(1), linear(x)[:, 1] - linear.bias[1], atol=1e-5)


def test_integrated_gradients_is_complete():
    model, x = small_net(), image()
    for rule in saliency.RULES[:2]:
        ig = saliency.integrated_gradients(model, x, 0, steps=64, rule=rule)
        error = saliency.completeness(model, x, 0, ig)["relative_error"].item()
        assert error < 0.01, (rule, error)


def test_integrated_gradients_error_shrinks_with_more_steps():
    model, x = small_net(), image()
    errors = [saliency.completeness(model, x, 0, saliency.integrated_gradients(model, x, 0, steps=s,
                                                                               rule="left"))["relative_error"].item()
              for s in (2, 32)]
    assert errors[1] < errors[0]


def test_integrated_gradients_with_a_baseline():
    model, x = small_net(), image()
    baseline = torch.full_like(x, 0.5)
    ig = saliency.integrated_gradients(model, x, 1, baseline=baseline, steps=64)
    assert saliency.completeness(model, x, 1, ig, baseline=baseline)["relative_error"].item() < 0.01
    # Where the input equals the baseline, IG gives exactly zero.
    x_same = x.clone()
    x_same[..., :2, :] = 0.5
    ig_same = saliency.integrated_gradients(model, x_same, 1, baseline=baseline, steps=8)
    assert (ig_same[..., :2, :] == 0).all()
    assert torch.allclose(saliency.integrated_gradients(model, x, 1, baseline=None, steps=8),
                          saliency.integrated_gradients(model, x, 1, baseline=0.0, steps=8))


def test_batched_and_unbatched_integrated_gradients_agree():
    model, x = small_net(), image(n=2)
    whole = saliency.integrated_gradients(model, x, [0, 2], steps=10)
    for batch_size in (1, 3, 7):
        assert torch.allclose(whole, saliency.integrated_gradients(model, x, [0, 2], steps=10,
                                                                   batch_size=batch_size), atol=1e-6)
    # Rows of a batch are explained independently.
    single = saliency.integrated_gradients(model, x[1:], 2, steps=10)
    assert torch.allclose(whole[1:], single, atol=1e-6)


def test_integrated_gradients_runs_steps_as_batches():
    model, calls = small_net(), []
    hook = model.register_forward_hook(lambda module, args, output: calls.append(args[0].shape[0]))
    saliency.integrated_gradients(model, image(), 0, steps=20, batch_size=8)
    hook.remove()
    assert calls == [8, 8, 4]


class Quartic(nn.Module):
    """A model whose score along any straight path is a polynomial of degree 4 in alpha."""

    def forward(self, x):
        flat = x.reshape(len(x), -1)
        return torch.stack([(flat ** 4).sum(1), (flat ** 2).sum(1)], dim=1)


def test_gauss_legendre_is_exact_for_polynomial_paths():
    # n Gauss-Legendre nodes integrate polynomials up to degree 2n - 1 exactly: the gradient
    # along the path has degree 3, so 2 nodes suffice, while the midpoint rule is still off.
    x = torch.linspace(-1, 1, 12).reshape(1, 3, 2, 2)
    exact = saliency.integrated_gradients(Quartic(), x, 0, steps=2, rule="gausslegendre").sum().item()
    assert abs(exact - Quartic()(x)[0, 0].item()) < 1e-5
    midpoint = saliency.integrated_gradients(Quartic(), x, 0, steps=2, rule="midpoint").sum().item()
    assert abs(midpoint - Quartic()(x)[0, 0].item()) > 0.1
    alphas, weights = saliency._alphas(5, "gausslegendre")
    assert ((alphas > 0) & (alphas < 1)).all() and abs(weights.sum().item() - 1) < 1e-12


@pytest.mark.parametrize("rule, captum_method", [("midpoint", "riemann_middle"), ("left", "riemann_left"),
                                                 ("right", "riemann_right"), ("gausslegendre", "gausslegendre")])
def test_integrated_gradients_agrees_with_captum(rule, captum_method):
    captum_attr = pytest.importorskip("captum.attr")
    model, x = small_net(), image(n=2)
    ours = saliency.integrated_gradients(model, x, [0, 2], steps=7, rule=rule, batch_size=3)
    theirs = captum_attr.IntegratedGradients(model).attribute(x, target=[0, 2], n_steps=7, method=captum_method)
    assert torch.allclose(ours, theirs, atol=1e-6)


def test_integrated_gradients_never_holds_the_whole_path():
    # Only one batch of path points may exist at a time: the model sees batches of 4 and
    # the largest tensor it is given is one batch, whatever the number of steps.
    model, largest = small_net(), []
    hook = model.register_forward_hook(lambda module, args, output: largest.append(args[0].numel()))
    x = image()
    saliency.integrated_gradients(model, x, 0, steps=200, batch_size=4)
    hook.remove()
    assert max(largest) == 4 * x.numel() and len(largest) == 50


def test_path_power_keeps_the_integral_and_moves_points_to_the_baseline():
    for rule in ("midpoint", "trapezoid", "gausslegendre"):
        alphas, weights = saliency._alphas(32, rule, path_power=3)
        # The weights still integrate a smooth function of alpha, here 3 alpha^2, correctly on [0, 1].
        assert abs((weights * 3 * alphas ** 2).sum().item() - 1) < 0.01, rule
        assert (alphas < 0.5).float().mean() > 0.65, rule  # u < 0.79 maps below alpha = 0.5, against half without
    model, x = small_net(), image()
    ig = saliency.integrated_gradients(model, x, 0, steps=64, path_power=3)
    assert saliency.completeness(model, x, 0, ig)["relative_error"].item() < 0.01
    with pytest.raises(ValueError, match="path_power must be a number >= 1"):
        saliency.integrated_gradients(model, x, 0, path_power=0.5)


def test_completeness_curve_matches_separate_runs():
    model, x = small_net(), image()
    for power in (1, 3):
        errors, attributions = saliency.completeness_curve(model, x, 1, steps=(2, 4, 8), path_power=power, batch_size=3)
        assert sorted(errors) == [2, 4, 8]
        for n, error in errors.items():
            ig = saliency.integrated_gradients(model, x, 1, steps=n, rule="trapezoid", path_power=power)
            assert abs(saliency.completeness(model, x, 1, ig)["relative_error"].item() - error) < 1e-4, (power, n)
        assert torch.allclose(attributions, saliency.integrated_gradients(model, x, 1, steps=8, rule="trapezoid",
                                                                          path_power=power), atol=1e-6)
        _, maps = saliency.completeness_curve(model, x, 1, steps=(2, 4, 8), path_power=power, batch_size=3,
                                              all_maps=True)
        assert sorted(maps) == [2, 4, 8]
        for n, attribution in maps.items():  # every map equals a separate run with that many steps
            assert torch.allclose(attribution, saliency.integrated_gradients(model, x, 1, steps=n, rule="trapezoid",
                                                                             path_power=power), atol=1e-6), (power, n)
        assert not torch.allclose(maps[2], maps[8], atol=1e-6)  # the check is live: the maps differ
    with pytest.raises(ValueError, match="divide the largest"):
        saliency.completeness_curve(model, x, 1, steps=(3, 8))
    with pytest.raises(ValueError, match="takes one input"):
        saliency.completeness_curve(model, image(n=2), 1)


def test_gradient_times_input_is_one_step_of_ig_from_zero():
    # Kindermans et al.: gradient x input is IG with a zero baseline and one step at the input,
    # so it changes when the input is shifted, even though the gradient does not.
    model, x = small_net(), image()
    one_step = saliency.integrated_gradients(model, x, 2, steps=1, rule="right")
    assert torch.allclose(saliency.gradient_times_input(model, x, 2), one_step, atol=1e-7)
    shifted = nn.Sequential(Shift(1.0), model)
    assert torch.allclose(saliency.input_gradients(shifted, x - 1.0, 2), saliency.input_gradients(model, x, 2), atol=1e-6)
    assert not torch.allclose(saliency.gradient_times_input(shifted, x - 1.0, 2),
                              saliency.gradient_times_input(model, x, 2), atol=1e-3)


class Shift(nn.Module):
    """Adds a constant: a model that reads inputs normalised with another zero point."""

    def __init__(self, shift):
        super().__init__()
        self.shift = shift

    def forward(self, x):
        return x + self.shift


def test_smoothgrad_is_seeded_and_is_the_gradient_without_noise():
    model, x = small_net(), image()
    a = saliency.smoothgrad(model, x, 1, n_samples=5, seed=3)
    assert torch.allclose(a, saliency.smoothgrad(model, x, 1, n_samples=5, seed=3, batch_size=2), atol=1e-7)
    assert not torch.equal(a, saliency.smoothgrad(model, x, 1, n_samples=5, seed=4))
    assert torch.allclose(saliency.smoothgrad(model, x, 1, n_samples=3, noise_level=0.0),
                          saliency.input_gradients(model, x, 1), atol=1e-6)


def test_occlusion_finds_the_only_pixels_that_matter():
    def model(x):  # the score of class 0 is the sum of the top-left 2 x 2 pixels
        score = x[:, :, :2, :2].sum((1, 2, 3))
        return torch.stack([score, -score], 1)

    x = torch.ones(1, 3, 8, 8)
    attribution = saliency.occlusion(model, x, 0, window=2, stride=2)
    assert torch.allclose(attribution[0, :, :2, :2], torch.full((3, 2, 2), 12.0))
    assert (attribution[0, :, 2:, :] == 0).all() and (attribution[0, :, :, 2:] == 0).all()
    # A stride that does not divide the size still covers every pixel.
    assert torch.isfinite(saliency.occlusion(model, x, 0, window=3, stride=2)).all()


def test_occlusion_over_tokens():
    def model(e):
        score = e[:, 1].sum(-1)
        return torch.stack([score, -score], 1)

    embeddings = torch.ones(1, 4, 5)
    attribution = saliency.occlusion(model, embeddings, 0, window=(1, 5), stride=(1, 5))
    assert torch.allclose(attribution[0, :, 0], torch.tensor([0.0, 5.0, 0.0, 0.0]))


def test_helpers_for_maps():
    attribution = torch.tensor([[[[1.0, -2.0]], [[-3.0, 4.0]]]])
    assert saliency.to_heatmap(attribution).tolist() == [[4.0, 6.0]]
    assert saliency.to_heatmap(attribution, absolute=False).tolist() == [[-2.0, 2.0]]
    with pytest.raises(ValueError, match="one image, got a batch of 2"):
        saliency.to_heatmap(torch.zeros(2, 3, 4, 4))
    with pytest.raises(ValueError, match=r"shape \(1, C, H, W\)"):
        saliency.to_heatmap(torch.zeros(4, 4))
    assert saliency.rank_correlation(torch.arange(5.0), torch.arange(5.0) * 2) == pytest.approx(1.0)
    assert saliency.rank_correlation(torch.arange(5.0), -torch.arange(5.0)) == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="map_b is constant"):
        saliency.rank_correlation(np.arange(5.0), np.zeros(5))  # a constant map ranks nothing
    with pytest.raises(ValueError, match="same shape"):
        saliency.rank_correlation(np.zeros(4), np.zeros(3))


def test_bad_input_is_explained():
    model, x = small_net(), image()
    with pytest.raises(ValueError, match="leading batch dimension"):
        saliency.input_gradients(model, torch.zeros(5), 0)
    with pytest.raises(TypeError, match="float tensor"):
        saliency.input_gradients(model, x.numpy(), 0)
    with pytest.raises(ValueError, match="out of range"):
        saliency.input_gradients(model, x, 7)
    with pytest.raises(ValueError, match="one int per row"):
        saliency.input_gradients(model, image(n=2), [0, 1, 2])
    with pytest.raises(ValueError, match="steps must be a positive int"):
        saliency.integrated_gradients(model, x, 0, steps=0)
    with pytest.raises(ValueError, match="rule must be one of"):
        saliency.integrated_gradients(model, x, 0, rule="simpson")
    with pytest.raises(ValueError, match="cannot be broadcast"):
        saliency.integrated_gradients(model, x, 0, baseline=torch.zeros(2, 2))
    with pytest.raises(ValueError, match="batch_size"):
        saliency.integrated_gradients(model, x, 0, batch_size=0)
    with pytest.raises(ValueError, match="noise_level"):
        saliency.smoothgrad(model, x, 0, noise_level=-1)
    with pytest.raises(ValueError, match="one input at a time"):
        saliency.occlusion(model, image(n=2), 0, window=2, stride=2)
    with pytest.raises(ValueError, match="larger than"):
        saliency.occlusion(model, x, 0, window=9, stride=1)
    with pytest.raises(ValueError, match=r"shape \(batch, n_classes\)"):
        saliency.input_gradients(lambda t: t.sum(), x, 0)


def test_reinitialise_uses_one_generator_and_resets_statistics():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Conv2d(4, 4, 3), torch.nn.Conv2d(4, 4, 3))
    net[1].running_mean.fill_(5.0)
    net[1].weight.data.fill_(3.0)
    before = [p.clone() for p in net.parameters()]
    generator = torch.Generator().manual_seed(0)
    saliency.reinitialise(net[0:2], generator)
    saliency.reinitialise(net[2], generator)
    saliency.reinitialise(net[3], generator)
    assert not torch.equal(net[0].weight, before[0])
    assert torch.equal(net[1].running_mean, torch.zeros(4)) and torch.equal(net[1].weight, torch.ones(4))
    assert not torch.equal(net[2].weight, net[3].weight), "two same-shaped layers got the same weights"
    again = torch.nn.Sequential(torch.nn.Conv2d(4, 4, 3), torch.nn.Conv2d(4, 4, 3))
    generator = torch.Generator().manual_seed(0)
    saliency.reinitialise(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)), generator)
    saliency.reinitialise(again[0], generator)
    assert torch.equal(again[0].weight, net[2].weight), "the same generator seed must give the same weights"
    state = torch.random.get_rng_state()
    saliency.reinitialise(again[1], torch.Generator().manual_seed(1))
    assert torch.equal(state, torch.random.get_rng_state()), "reinitialise must not move the global generator"
    with pytest.raises(TypeError, match="torch.Generator"):
        saliency.reinitialise(net, 0)
