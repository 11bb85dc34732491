"""Checks for episode 04's code-along exercises: GradCAM."""

import torch

from .harness import ARRAY, Returns, Wrong, close, exercise


def tiny_cnn(seed=0):
    """A small convolutional classifier (3 classes) and its target layer, for the GradCAM checks."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = torch.nn.Sequential(
            torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(4, 6, 3, padding=1), torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(6, 3))
        x = torch.randn(1, 3, 5, 6)
    return model.eval(), model[2], x


def _reference_activations_and_gradients(model, layer, x, class_index):
    from xai_lesson.cam import activations_and_gradients
    return activations_and_gradients(model, layer, x, class_index)


def _reference_gradcam_weights(A, dA):
    from xai_lesson.cam import channel_weights
    return channel_weights(dA)


def _reference_gradcam_map(A, weights):
    return torch.relu((torch.as_tensor(weights)[:, None, None] * torch.as_tensor(A)).sum(dim=0))


def _fresh_feature_maps(seed):
    """Feature maps and their gradients, (channels, h, w), of another size for each seed."""
    generator = torch.Generator().manual_seed(seed)
    shape = (3 + 2 * seed, 2 + seed, 5 - seed)
    return torch.rand(shape, generator=generator), torch.randn(shape, generator=generator)


def _fresh_weighted_maps(seed):
    A, dA = _fresh_feature_maps(seed)
    return A, dA.mean(dim=(1, 2))


PAIR = Returns("two tensors (A, dA)",
               lambda v: isinstance(v, (tuple, list)) and len(v) == 2 and all(torch.is_tensor(t) for t in v),
               "end with `return A, dA`, the two tensors the hooks stored")


@exercise("4.1", "activations_and_gradients", _reference_activations_and_gradients,
          "It returns the layer's feature maps and their gradients, (channels, h, w) each, and leaves no hook behind.",
          returns=PAIR, fresh=lambda seed: (*tiny_cnn(seed), seed % 3))
def check_activations_and_gradients(learner):
    model, layer, x = tiny_cnn()
    for class_index in (0, 2, 2):              # twice the same class: a second call must give the same answer
        A, dA = learner(model, layer, x, class_index)
        want_A, want_dA = _reference_activations_and_gradients(model, layer, x, class_index)
        for name, got, want in [("A", A, want_A), ("dA", dA, want_dA)]:
            shape = tuple(got.shape)
            if shape == (1, *want.shape):
                raise Wrong(f"{name} has shape {shape}, with the batch dimension",
                            "take the first (only) image with [0], to get (channels, h, w)")
            if shape != tuple(want.shape):
                raise Wrong(f"{name} has shape {shape}, not (channels, h, w) = {tuple(want.shape)}",
                            "store the output of the hooked layer itself, and its gradient")
            if got.requires_grad:
                raise Wrong(f"{name} is still attached to the graph (requires_grad=True)",
                            "call .detach() on what the hooks stored")
        if not close(A, want_A):
            raise Wrong("A is not the hooked layer's output", "store `output` in the forward hook on `layer`")
        if not close(dA, want_dA):
            everything = sum(_reference_activations_and_gradients(model, layer, x, c)[1] for c in range(3))
            if close(dA, everything):
                raise Wrong("dA is the gradient of the sum of all class scores",
                            "call .backward() on the one score scores[0, class_index]")
            if close(dA, 2 * want_dA) or close(dA, want_dA + _reference_activations_and_gradients(
                    model, layer, x, 0)[1]):
                raise Wrong("dA adds up gradients from an earlier call",
                            "make a fresh dictionary for the stored tensors inside the function, and "
                            "keep the gradient the hook receives instead of adding to it")
            raise Wrong("dA is not the gradient of the class score with respect to A",
                        "register `output.register_hook(...)` inside the forward hook and backpropagate "
                        "scores[0, class_index]")


@exercise("4.2", "gradcam_weights", _reference_gradcam_weights,
          "One weight per channel: each channel's gradient averaged over the grid.",
          returns=ARRAY, fresh=_fresh_feature_maps)
def check_gradcam_weights(learner):
    generator = torch.Generator().manual_seed(0)
    A = torch.rand(5, 3, 4, generator=generator)                # 5 channels on a 3 x 4 grid
    dA = torch.randn(5, 3, 4, generator=generator)
    weights = learner(A.clone(), dA.clone())
    want = _reference_gradcam_weights(A, dA)
    shape = tuple(weights.shape)
    if shape != (5,):
        if shape in [(3, 4), (5, 3), (5, 4), (3,), (4,)]:
            raise Wrong(f"for 5 channels on a 3 x 4 grid it has shape {shape}, not (5,): it pools over the wrong axes",
                        "average over the grid, dims (1, 2), and keep dim 0, the channels")
        raise Wrong(f"for 5 channels on a 3 x 4 grid it has shape {shape}, not one weight per channel (5,)",
                    "average dA over dims (1, 2)")
    if close(weights, want):
        return
    if close(weights, want * 12):
        raise Wrong("the weights are 12 times too large on a 3 x 4 grid: a sum, not a mean",
                    "average the gradient over the grid with .mean(dim=(1, 2))")
    if close(weights, A.mean(dim=(1, 2))):
        raise Wrong("the weights are the averaged activations A", "average the gradients dA, not A")
    if close(weights, dA.abs().mean(dim=(1, 2))) or close(weights, torch.relu(dA).mean(dim=(1, 2))):
        raise Wrong("the negative gradients are lost", "average dA itself: no abs() or relu() before pooling")
    raise Wrong("the weights are not the channel means of dA", "return dA.mean(dim=(1, 2))")


@exercise("4.3", "gradcam_map", _reference_gradcam_map,
          "The weighted sum of the feature maps, with its negative part set to zero.",
          returns=ARRAY, fresh=_fresh_weighted_maps)
def check_gradcam_map(learner):
    generator = torch.Generator().manual_seed(1)
    A = torch.rand(5, 3, 4, generator=generator)
    weights = torch.tensor([0.5, -1.0, 0.25, -0.1, 0.2])        # mixed signs: the ReLU matters
    cam = learner(A.clone(), weights.clone())
    want = _reference_gradcam_map(A, weights)
    shape = tuple(cam.shape)
    if shape != (3, 4):
        raise Wrong(f"for 5 channels on a 3 x 4 grid it has shape {shape}, not (3, 4)",
                    "multiply A by weights[:, None, None] and sum over dim 0, the channels")
    if close(cam, want):
        if not bool((want == 0).any()):
            raise AssertionError("the check's example has no negative region; it cannot test the ReLU")
        return
    raw = (weights[:, None, None] * A).sum(dim=0)
    if close(cam, raw):
        raise Wrong("the map has negative values", "keep the positive part: torch.relu(...) of the weighted sum")
    if close(cam, torch.relu(weights[:, None, None] * A).sum(dim=0)):
        raise Wrong("the ReLU is applied to each channel before the sum", "sum the weighted maps first, then apply the ReLU")
    if close(cam, want / 5) or close(cam, torch.relu(raw / 5)):
        raise Wrong("the map is 5 times too small with 5 channels: a mean over channels, not a sum",
                    "sum the weighted maps with .sum(dim=0)")
    raise Wrong("the map is not relu(sum over channels of weight * A)",
                "return torch.relu((weights[:, None, None] * A).sum(dim=0))")
