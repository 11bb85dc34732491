"""Checks shared by the lesson's public helpers (issue 30).

Each check raises a ``ValueError`` or ``TypeError`` whose message says what was
expected and what was given, so that a wrong argument stops at the top of the
helper instead of reaching a deep torch error or, worse, a silently wrong answer.
``kept_as_found(model)`` restores everything a helper may change on a model.
"""

import math
import numbers
from contextlib import contextmanager

import numpy as np
import torch


def _shown(value):
    if torch.is_tensor(value):
        return f"a tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    text = repr(value)
    return text if len(text) <= 60 else f"a {type(value).__name__}"


def is_int(value):
    """An int or a NumPy integer, not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def index(value, n=None, name="index", counted="items"):
    """One index into ``n`` items (layers, tokens): an int, not a bool or a float, with 0 <= value < n."""
    if not is_int(value):
        raise TypeError(f"{name} must be a non-negative int, got {_shown(value)}.")
    if value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value}: a negative index would count from "
                         "the end and pick another one.")
    if n is not None and value >= n:
        raise ValueError(f"{name} {value} is out of range: there are {n} {counted} (0 to {n - 1}).")
    return int(value)


def class_index(value, n_classes=None, name="target"):
    """One class index: an int with 0 <= value < n_classes. Returns it as an int."""
    if not is_int(value) or value < 0:
        raise ValueError(f"{name} must be a class index, a non-negative int, got {_shown(value)} (a negative "
                         "index would count from the end and pick another class).")
    if n_classes is not None and value >= n_classes:
        raise ValueError(f"{name} must be a class index from 0 to {n_classes - 1}; {value} is out of range: "
                         f"the model has {n_classes} classes.")
    return int(value)


def class_indices(value, n_rows, n_classes=None, name="target"):
    """One class index, or one per row: a long tensor of ``n_rows`` valid class indices."""
    if is_int(value) or isinstance(value, (bool, float, np.bool_, np.floating)):
        return torch.full((n_rows,), class_index(value, n_classes, name), dtype=torch.long)
    values = torch.as_tensor(value)
    if values.dtype.is_floating_point or values.dtype.is_complex or values.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer class indices, got {_shown(values)}.")
    values = values.long().reshape(-1)
    if values.numel() == 1:
        values = values.expand(n_rows)
    if values.shape != (n_rows,):
        raise ValueError(f"{name} must be one int, or one int per row (one per image or input: {n_rows}); "
                         f"got {values.numel()} values.")
    for value in values.unique().tolist():
        class_index(value, n_classes, name)
    return values


def count(value, name, minimum=1):
    """A whole number of at least ``minimum`` (a bool is not a number here)."""
    if not is_int(value) or value < minimum:
        expected = "a positive int" if minimum == 1 else f"an int of at least {minimum}"
        raise ValueError(f"{name} must be {expected}, got {_shown(value)}.")
    return int(value)


def number(value, name, minimum=None):
    """A finite real number, at least ``minimum`` when given."""
    if (isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value)
            or (minimum is not None and value < minimum)):
        bound = "" if minimum is None else f" of at least {minimum:g}"
        raise ValueError(f"{name} must be a finite number{bound}, got {_shown(value)}.")
    return float(value)


def fraction(value, name, one_allowed=False):
    """A number between 0 and 1, both excluded (1 included with ``one_allowed``): a share, not a percentage."""
    if (isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value <= 1
            or (value == 1 and not one_allowed)):
        interval = "above 0 and at most 1" if one_allowed else "strictly between 0 and 1"
        raise ValueError(f"{name} must be a fraction {interval} (0.25, not 25), got {_shown(value)}.")
    return float(value)


def finite(values, name):
    """No NaN or infinite value in a tensor or an array."""
    array = values.detach() if torch.is_tensor(values) else np.asarray(values, dtype=float)
    ok = bool(torch.isfinite(array).all()) if torch.is_tensor(array) else bool(np.isfinite(array).all())
    if not ok:
        raise ValueError(f"{name} holds NaN or infinite values: compute or select only finite entries first.")
    return values


def texts(values, name="texts"):
    """A non-empty list of strings, as a new list; one string is refused with the fix (wrap it as [text])."""
    if isinstance(values, str):
        raise TypeError(f"{name} must be a list of strings, not one string: wrap it as [text].")
    try:
        values = list(values)
    except TypeError:
        raise TypeError(f"{name} must be a non-empty list of strings, got {_shown(values)}.") from None
    if not values:
        raise ValueError(f"{name} must be a non-empty list of strings, got an empty list.")
    if not all(isinstance(text, str) for text in values):
        raise TypeError(f"{name} must be a non-empty list of strings; it holds "
                        f"{_shown(next(t for t in values if not isinstance(t, str)))}.")
    return values


def not_empty(n, what, fix):
    """An empty result is an error, not a value: ``n`` items of ``what`` must be at least one."""
    if n == 0:
        raise ValueError(f"{what} is empty: {fix}")
    return n


def probabilities(values, n_rows, n_classes=None, name="predict_proba"):
    """A (n_rows, classes) array of class probabilities whose rows sum to 1; returned as floats."""
    probs = np.asarray(values, dtype=float)
    expected = f"({n_rows}, {'classes' if n_classes is None else n_classes})"
    if probs.ndim != 2 or probs.shape[0] != n_rows or (n_classes is not None and probs.shape[1] != n_classes):
        raise ValueError(f"{name} must return one row of class probabilities per text, shape {expected}; "
                         f"got shape {probs.shape}.")
    if probs.shape[1] < 2:
        raise ValueError(f"{name} returned {probs.shape[1]} column(s): it needs one per class, at least 2.")
    if not np.isfinite(probs).all() or not np.allclose(probs.sum(1), 1.0, atol=1e-3):
        raise ValueError(f"{name} must return probabilities, finite and summing to 1 in each row; got rows that "
                         "do not: apply a softmax to logits first.")
    return probs


def binary_probabilities(values, n_rows, name="predict_proba"):
    """Probabilities of a two-class model, where column 1 is p(positive)."""
    probs = probabilities(values, n_rows, name=name)
    if probs.shape[1] != 2:
        raise ValueError(f"{name} returned {probs.shape[1]} classes, but this test reads column 1 as "
                         "p(positive) and needs a two-class (negative, positive) model.")
    return probs


def token_ids(ids, vocab_size, name="token ids"):
    """Integer token ids, each from 0 to vocab_size - 1."""
    values = torch.as_tensor(ids)
    if values.dtype.is_floating_point or values.dtype == torch.bool:
        raise TypeError(f"{name} must be integer token ids, got {_shown(ids)}.")
    if values.numel() == 0:
        raise ValueError(f"{name} is empty: give at least one token id.")
    bad = (values < 0) | (values >= vocab_size)
    if bool(bad.any()):
        raise ValueError(f"{name} must lie from 0 to {vocab_size - 1} (the vocabulary), got {values[bad][0].item()}.")
    return values.long()


def context_length(n_tokens, model):
    """A prompt of ``n_tokens`` tokens, at least one, that fits the model's context."""
    if n_tokens == 0:
        raise ValueError("the prompt gives no tokens: pass a non-empty prompt.")
    context = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if context is not None and n_tokens > context:
        raise ValueError(f"The prompt has {n_tokens} tokens, more than the model's context of {context} "
                         "positions: its output would be meaningless. Shorten the prompt.")
    return n_tokens


def model_dtype(model):
    """The dtype of the model's floating-point parameters (None for a function or a model without any)."""
    parameters = getattr(model, "parameters", None)
    if parameters is None:
        return None
    return next((p.dtype for p in parameters() if p.is_floating_point()), None)


def matching_dtype(x, model, name="x"):
    """A float tensor whose dtype is the model's (float64 or float16 into a float32 model is an error)."""
    if not torch.is_tensor(x) or not torch.is_floating_point(x):
        given = f"dtype {x.dtype}" if torch.is_tensor(x) else type(x).__name__
        raise TypeError(f"{name} must be a float tensor, got {given}: convert a uint8 image with "
                        "classifier.preprocess(image).")
    dtype = model_dtype(model)
    if dtype is not None and x.dtype != dtype:
        raise TypeError(f"{name} has dtype {x.dtype} but the model computes in {dtype}: pass x.to({dtype}).")
    return x


def first_conv_channels(model):
    """Input channels of the model's first 2-D convolution, or None if it has none."""
    modules = getattr(model, "modules", None)
    if modules is None:
        return None
    return next((m.in_channels for m in modules() if isinstance(m, torch.nn.Conv2d)), None)


def images(x, model=None, name="x", channels=None):
    """A finite float batch of images (N, C, H, W) with the model's dtype and number of channels."""
    if not torch.is_tensor(x) or x.ndim != 4 or x.shape[0] < 1:
        raise ValueError(f"{name} must be a batch of images shaped (N, C, H, W), got {_shown(x)}.")
    matching_dtype(x, model, name)
    channels = channels or first_conv_channels(model)
    if channels is not None and x.shape[1] != channels:
        hint = " It looks channels-last: use x.permute(0, 3, 1, 2)." if x.shape[-1] == channels else ""
        raise ValueError(f"{name} has {x.shape[1]} channels in dimension 1, the model expects {channels}, "
                         f"shape (N, {channels}, H, W); got {tuple(x.shape)}.{hint}")
    return finite(x, name)


def image_range(x, mean, std, name="x"):
    """Pixel values in the range ``preprocess(image, mean=mean, std=std)`` gives, not 0-255 or unnormalised [0, 1]."""
    mean, std = torch.tensor(mean, dtype=x.dtype), torch.tensor(std, dtype=x.dtype)
    low, high = float(((0 - mean) / std).min()), float(((1 - mean) / std).max())
    found_low, found_high = float(x.min()), float(x.max())
    tolerance = 1e-3 * (high - low)
    if found_low < low - tolerance or found_high > high + tolerance:
        raise ValueError(f"{name}'s values run from {found_low:.3g} to {found_high:.3g}, outside the range "
                         f"{low:.3g} to {high:.3g} of a preprocessed image: pass the photo through "
                         "classifier.preprocess(image).")
    if low < -0.5 and found_low >= 0 and found_high <= 1:
        raise ValueError(f"{name}'s values run from {found_low:.3g} to {found_high:.3g}: it looks like an image "
                         f"in [0, 1] that was not normalised (a preprocessed image runs from {low:.3g} to "
                         f"{high:.3g}). Pass the photo through classifier.preprocess(image).")
    return x


def module_of(module, model, name="module"):
    """A sub-module of ``model`` (the very object, not a copy of it)."""
    if not isinstance(module, torch.nn.Module) or not any(m is module for m in model.modules()):
        raise ValueError(f"{name} must be a sub-module of the model (for example model.model.layers[0]), got "
                         f"{type(module).__name__}, which is not part of it.")
    return module


def _state(model):
    modules = list(model.modules())
    return (modules, [m.training for m in modules], [dict(m._modules) for m in modules],
            [(p, p.requires_grad, None if p.grad is None else p.grad.clone()) for p in model.parameters()])


@contextmanager
def kept_as_found(model):
    """Restore the model as it was when the block ends, after success or an error.

    Restored: each sub-module's train/eval mode, its children (a library that swaps
    layers, as pytorch-grad-cam swaps ReLUs, is undone), the parameters'
    ``requires_grad`` flags and gradients. Hooks are not touched here: a helper removes its own
    in a ``finally`` block, and transformers keeps hooks it adds on first use. A callable that
    is not an ``nn.Module`` is left alone.
    """
    if not isinstance(model, torch.nn.Module):
        yield
        return
    modules, training, children, grads = _state(model)
    try:
        yield
    finally:
        for module, mode, kept in zip(modules, training, children):
            module._modules.clear()
            module._modules.update(kept)
            module.training = mode
        for parameter, flag, grad in grads:
            parameter.requires_grad_(flag)
            parameter.grad = grad
