"""The model-randomisation test's helpers: the cascade, liveness, Guided Backpropagation, Sobel."""

import copy

import pytest
import torch
from torch import nn

from xai_lesson import saliency, sanity


class TinyNet(nn.Module):
    """Stem, two blocks and a classifier, with ReLU6 as in EfficientNet-Lite."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU6())
        self.block = nn.Sequential(nn.Conv2d(6, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU6())
        self.head = nn.Sequential(nn.Conv2d(6, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU6())
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        return self.fc(self.head(self.block(self.stem(x))).mean((2, 3)))


STAGES = (("classifier", ("fc",)), ("head", ("head",)), ("block", ("block",)), ("stem", ("stem",)))


def tiny_net():
    torch.manual_seed(0)
    net = TinyNet().eval()
    for bn in (m for m in net.modules() if isinstance(m, nn.BatchNorm2d)):
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    return net


def images(n=4):
    return torch.randn(n, 3, 8, 8, generator=torch.Generator().manual_seed(1))


def test_cascade_randomises_cumulatively_from_the_top_and_leaves_the_model_alone():
    net, x = tiny_net(), images()
    original = {k: v.clone() for k, v in net.state_dict().items()}
    seen = []
    for stage, network in sanity.randomisation_cascade(net, x, STAGES):
        state = network.state_dict()
        changed = {name.split(".")[0] for name in original
                   if "num_batches" not in name and not torch.equal(state[name], original[name])}
        seen.append((stage, changed))
        assert not network.training
    assert [s for s, _ in seen] == ["original", "classifier", "head", "block", "stem"]
    assert [c for _, c in seen] == [set(), {"fc"}, {"fc", "head"}, {"fc", "head", "block"},
                                    {"fc", "head", "block", "stem"}]
    assert all(torch.equal(v, original[k]) for k, v in net.state_dict().items()), "the model itself changed"


def test_cascade_is_reproducible_and_uses_one_generator():
    net, x = tiny_net(), images()
    runs = []
    for _ in range(2):
        *_, (_, last) = sanity.randomisation_cascade(net, x, STAGES, generator=torch.Generator().manual_seed(3))
        runs.append(last.state_dict())
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert not torch.equal(runs[0]["block.0.weight"], runs[0]["head.0.weight"]), "same-shaped layers got the same weights"


def test_recalibrated_batchnorm_keeps_the_random_network_live():
    net, x = tiny_net(), images(16)
    for stage, network in sanity.randomisation_cascade(net, x, STAGES):
        if stage == "stem":
            # Each re-initialised BatchNorm now normalises its input on these images.
            features = network.stem[:2](x)
            assert features.mean((0, 2, 3)).abs().max() < 1e-4
            assert (features.var((0, 2, 3)) - 1).abs().max() < 0.1
            assert sanity.logit_spread(network, x) > 0.01
    *_, (_, raw) = sanity.randomisation_cascade(net, x, STAGES, recalibrate=False)
    assert torch.equal(raw.stem[1].running_var, torch.ones(6)), "without recalibration the statistics stay reset"


def test_cascade_rejects_unknown_layers():
    with pytest.raises(ValueError, match="does not have"):
        list(sanity.randomisation_cascade(tiny_net(), images(), (("top", ("nonexistent",)),)))


def test_logit_spread_is_zero_for_a_dead_network_and_needs_two_images():
    dead = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 3))
    nn.init.zeros_(dead[1].weight)
    assert sanity.logit_spread(dead, images()) == 0.0
    assert sanity.logit_spread(tiny_net(), images()) > 0
    with pytest.raises(ValueError, match="at least two"):
        sanity.logit_spread(dead, images(1))


def test_split_relu6_keeps_the_function():
    net, x = tiny_net(), images()
    with torch.no_grad():
        before = net(x * 20)  # large inputs: the clamp at 6 matters
        split = sanity.split_relu6(net)
        after = split(x * 20)
    assert torch.allclose(before, after)
    assert not any(isinstance(m, nn.ReLU6) for m in split.modules())
    assert any(isinstance(m, nn.ReLU6) for m in net.modules()), "split_relu6 must leave the model itself unchanged"


def test_guided_backprop_differs_from_the_gradient_only_after_the_split():
    net, x = tiny_net(), images(2)
    gradient = saliency.input_gradients(net, x, [0, 2])
    with pytest.raises(ValueError, match="split_relu6"):
        sanity.guided_backprop(net, x, [0, 2])
    net = sanity.split_relu6(net)
    guided = sanity.guided_backprop(net, x, [0, 2])
    assert guided.shape == x.shape
    assert not torch.allclose(guided, gradient)
    assert torch.allclose(saliency.input_gradients(net, x, [0, 2]), gradient), "the split changed the gradient"
    assert not any(type(m).__name__ == "GuidedBackpropReLUasModule" for m in net.modules()), "ReLUs not restored"
    with pytest.raises(ValueError, match="one per image"):
        sanity.guided_backprop(net, x, [0, 1, 2])


def test_batched_guided_backprop_equals_the_library_one_image_at_a_time():
    from pytorch_grad_cam import GuidedBackpropReLUModel

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1),
                        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
    x = torch.randn(5, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    targets = [0, 2, 1, 1, 0]
    batched = sanity.guided_backprop(net, x, targets)
    one_by_one = torch.stack([torch.from_numpy(GuidedBackpropReLUModel(copy.deepcopy(net), device="cpu")(
        x[i:i + 1].clone(), targets[i])).permute(2, 0, 1) for i in range(len(x))])
    assert torch.allclose(batched, one_by_one, atol=1e-6)
    # The model comes back with its own ReLUs.
    assert sum(isinstance(m, nn.ReLU) for m in net.modules()) == 2


def test_guided_backprop_of_a_relu_then_linear_model():
    # One ReLU layer: guided backprop keeps the weight where the unit is active and the weight is positive.
    linear1, linear2 = nn.Linear(2, 2, bias=False), nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        linear1.weight.copy_(torch.eye(2))
        linear2.weight.copy_(torch.tensor([[1.0, -1.0]]))
    net = nn.Sequential(nn.Flatten(), linear1, nn.ReLU(), linear2)
    x = torch.tensor([[1.0, 1.0]]).reshape(1, 2, 1, 1)
    guided = sanity.guided_backprop(net, x, 0)
    assert torch.equal(guided.reshape(-1), torch.tensor([1.0, 0.0]))


def test_sobel_edges_sees_an_edge_and_ignores_flat_images():
    x = torch.zeros(2, 3, 16, 16)
    x[0, :, :, 8:] = 1.0
    edges = sanity.sobel_edges(x)
    assert edges.shape == (2, 16, 16)
    assert edges[0, :, 7:9].min() > 0 and edges[0, :, :6].abs().max() == 0
    assert edges[1].abs().max() == 0
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        sanity.sobel_edges(torch.zeros(16, 16))
