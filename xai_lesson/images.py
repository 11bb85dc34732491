"""Photos that ship with scikit-image and scikit-learn, ImageNet labels, and preprocessing."""

import functools

import numpy as np
import torch
from PIL import Image

# name -> (where it comes from, loader). All of them are bundled, so they load offline.
PHOTOS = {
    "cat": ("skimage.data.chelsea", lambda: __import__("skimage.data").data.chelsea()),
    "coffee": ("skimage.data.coffee", lambda: __import__("skimage.data").data.coffee()),
    "rocket": ("skimage.data.rocket", lambda: __import__("skimage.data").data.rocket()),
    "astronaut": ("skimage.data.astronaut", lambda: __import__("skimage.data").data.astronaut()),
    "china": ("sklearn.datasets.load_sample_image('china.jpg')",
              lambda: __import__("sklearn.datasets").datasets.load_sample_image("china.jpg")),
    "flower": ("sklearn.datasets.load_sample_image('flower.jpg')",
               lambda: __import__("sklearn.datasets").datasets.load_sample_image("flower.jpg")),
}


@functools.lru_cache(maxsize=1)
def imagenet_labels():
    """The 1,000 ImageNet-1k class names, from torchvision's weight metadata (no download)."""
    from torchvision.models import ResNet18_Weights

    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def load_photo(name):
    """One of the bundled photos as an RGB PIL image: 'cat', 'coffee', 'rocket', 'astronaut', 'china', 'flower'."""
    if name not in PHOTOS:
        raise ValueError(f"Unknown photo {name!r}. Choose one of {sorted(PHOTOS)}.")
    return Image.fromarray(PHOTOS[name][1]()).convert("RGB")


def preprocess(image, size=224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)):
    """Resize the short side to ``size``, crop the centre square and normalise.

    Accepts a PIL image or an H x W x 3 uint8 array; returns a (1, 3, size, size) float tensor.
    """
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError("preprocess expects an H x W x 3 uint8 array or a PIL image, got an "
                             f"array of shape {image.shape} and dtype {image.dtype}.")
        image = Image.fromarray(image)
    if not isinstance(image, Image.Image):
        raise TypeError(f"preprocess expects a PIL image or a numpy array, got {type(image).__name__}.")
    if image.mode.startswith(("I", "F")):
        raise ValueError(f"preprocess expects an 8-bit image, got a PIL image of mode {image.mode!r} (16-bit, "
                         "32-bit or float), whose values above 255 would be clipped to white. Scale it to "
                         "0-255 first, e.g. Image.fromarray((np.asarray(image) / 256).astype(np.uint8)).")
    from xai_lesson import validate

    validate.count(size, "size (pixels)")
    image = image.convert("RGB")
    scale = size / min(image.size)
    width, height = round(image.width * scale), round(image.height * scale)
    image = image.resize((width, height), Image.BILINEAR)
    left, top = (width - size) // 2, (height - size) // 2
    image = image.crop((left, top, left + size, top + size))
    array = np.asarray(image, dtype=np.float32) / 255.0
    array = (array - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).contiguous()


def one_image(x, caller, channels=None):
    """Check that ``x`` holds one image, (1, C, H, W) or (C, H, W), and return it as (C, H, W).

    ``caller`` names the function in the error message; ``channels`` fixes C if given.
    """
    c = "C" if channels is None else str(channels)
    if not torch.is_tensor(x) or x.ndim not in (3, 4) or (channels is not None and x.shape[-3] != channels):
        raise ValueError(f"{caller} expects a tensor of shape (1, {c}, H, W) or ({c}, H, W), got "
                         f"{tuple(x.shape) if torch.is_tensor(x) else type(x).__name__}.")
    if x.ndim == 4:
        if x.shape[0] != 1:
            raise ValueError(f"{caller} takes one image, got a batch of {x.shape[0]}: pass x[i:i + 1].")
        x = x[0]
    return x


def unnormalise(x, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)):
    """Undo ``preprocess``: a (1, 3, H, W) or (3, H, W) tensor -> H x W x 3 float array in [0, 1]."""
    x = one_image(x, "unnormalise", channels=3)
    array = x.detach().cpu().permute(1, 2, 0).numpy()
    return np.clip(array * np.asarray(std) + np.asarray(mean), 0.0, 1.0)
