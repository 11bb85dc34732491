"""A small CNN and a plain training loop, for the synthetic image data sets.

The saliency and GradCAM episodes train one in seconds on the CPU, so that the
model's true evidence is known and an explanation can be scored against it.
"""

import torch
from torch import nn


class SmallCNN(nn.Module):
    """Three 3x3 convolution blocks, global average pooling and a linear classifier.

    ``model.last_conv`` is the last convolution layer: the natural GradCAM target.
    """

    def __init__(self, in_channels=3, n_classes=2, width=16):
        super().__init__()
        if in_channels < 1 or n_classes < 2 or width < 1:
            raise ValueError("SmallCNN needs in_channels >= 1, n_classes >= 2 and width >= 1, got "
                             f"{in_channels}, {n_classes} and {width}.")
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.ReLU(),
        )
        self.last_conv = self.features[-2]
        self.classifier = nn.Linear(2 * width, n_classes)

    def forward(self, x):
        return self.classifier(self.features(x).mean(dim=(2, 3)))


def _check_data(inputs, labels):
    if not torch.is_tensor(inputs) or inputs.ndim != 4:
        raise ValueError("inputs must be a float tensor of shape (N, C, H, W), got "
                         f"{tuple(inputs.shape) if torch.is_tensor(inputs) else type(inputs).__name__}.")
    if inputs.shape[0] == 0:
        raise ValueError("inputs holds no images (shape (0, ...)): pass at least one training image.")
    if not torch.is_floating_point(inputs):
        raise TypeError(f"inputs must be a float tensor, got dtype {inputs.dtype}: use inputs.float() / 255 "
                        "for uint8 images.")
    labels = torch.as_tensor(labels)
    if labels.shape != (inputs.shape[0],):
        raise ValueError(f"labels must have shape ({inputs.shape[0]},), one per input, got {tuple(labels.shape)}.")
    return labels.long()


def fit(model, inputs, labels, epochs=5, batch_size=64, lr=3e-3, seed=0):
    """Train ``model`` with Adam and cross-entropy; returns the mean loss of each epoch."""
    labels = _check_data(inputs, labels)
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}.")
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    losses = []
    for _ in range(epochs):
        order = torch.randperm(len(inputs), generator=generator)
        total = 0.0
        for start in range(0, len(inputs), batch_size):
            batch = order[start:start + batch_size]
            loss = nn.functional.cross_entropy(model(inputs[batch]), labels[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item() * len(batch)
        losses.append(total / len(inputs))
    model.eval()
    return losses


@torch.no_grad()
def accuracy(model, inputs, labels, batch_size=256):
    """Share of ``inputs`` that ``model`` classifies as ``labels``."""
    labels = _check_data(inputs, labels)
    model.eval()
    predictions = torch.cat([model(inputs[i:i + batch_size]).argmax(-1)
                             for i in range(0, len(inputs), batch_size)])
    return float((predictions == labels).float().mean())
