"""Make a CUDA build of torchvision importable next to a CPU build of torch.

The Linux torchvision wheel on PyPI is built against CUDA. Its compiled
extension (``_C.so``) links CUDA libraries that the CPU torch wheel lacks, so
torchvision marks its compiled ops as unavailable. One module,
``torchvision/_meta_registrations.py``, still registers fake kernels for two of
those ops unconditionally, and ``import torchvision`` then fails with
``RuntimeError: operator torchvision::nms does not exist``. Because
transformers imports torchvision whenever it is installed, model loading fails
too.

This script guards those registrations so that they only run when the compiled
ops exist. It changes nothing when ``import torchvision`` already works, which
is the case with PyTorch's own CPU wheels or conda-forge. After the fix the
compiled ops (``torchvision.ops.nms``, ``torchvision.io.read_image``) still do
not work; the lesson does not use them and reads images with PIL.

Usage: python scripts/fix_torchvision.py [--check]
"""

import argparse
import importlib.util
import subprocess
import sys
from pathlib import Path

BROKEN_DECORATOR = '@torch.library.register_fake("torchvision::'
GUARDED_DECORATOR = '@_register_fake_if_ops("torchvision::'
GUARD = '''

def _register_fake_if_ops(op_name):
    # Added by the xai-lesson set-up (scripts/fix_torchvision.py): a CUDA
    # torchvision wheel next to a CPU torch has no compiled ops to fake.
    if torchvision.extension._has_ops():
        return torch.library.register_fake(op_name)
    return lambda fn: fn
'''
ANCHOR = "import torchvision.extension  # noqa: F401\n"


def torchvision_imports():
    """Return (ok, error text) for ``import torchvision`` in a fresh interpreter."""
    result = subprocess.run(
        [sys.executable, "-c", "import torchvision"], capture_output=True, text=True
    )
    return result.returncode == 0, result.stderr.strip().splitlines()[-1:] or [""]


def meta_registrations_path():
    spec = importlib.util.find_spec("torchvision")
    if spec is None:
        sys.exit("torchvision is not installed in this environment; run the set-up first.")
    return Path(spec.submodule_search_locations[0]) / "_meta_registrations.py"


def patch(path):
    source = path.read_text()
    if GUARDED_DECORATOR in source:
        return False
    if BROKEN_DECORATOR not in source or ANCHOR not in source:
        sys.exit(
            f"{path} does not look like the file this fix knows "
            "(torchvision 0.28). Install torchvision==0.28.0 or a CPU build of torchvision."
        )
    source = source.replace(ANCHOR, ANCHOR + GUARD, 1).replace(BROKEN_DECORATOR, GUARDED_DECORATOR)
    path.write_text(source)
    return True


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report, change nothing")
    args = parser.parse_args()

    ok, error = torchvision_imports()
    if ok:
        print("torchvision imports cleanly: no fix needed.")
        return
    if "operator torchvision::" not in error[0]:
        sys.exit(f"import torchvision fails for a reason this fix does not handle: {error[0]}")
    if args.check:
        sys.exit("torchvision is a CUDA build next to a CPU torch: run scripts/fix_torchvision.py")
    path = meta_registrations_path()
    patch(path)
    ok, error = torchvision_imports()
    if not ok:
        sys.exit(f"torchvision still fails to import after the fix: {error[0]}")
    print(f"Guarded the fake-kernel registrations in {path}: torchvision now imports.")


if __name__ == "__main__":
    main()
