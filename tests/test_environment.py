"""The environment: both install routes pin the same versions, and the CPU stack imports."""

import importlib.metadata
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^([A-Za-z0-9_.-]+)==([^\s;#]+)")


def pins(lines):
    found = {}
    for line in lines:
        match = PIN.match(line.strip())
        if match:
            found[match.group(1).lower().replace("_", "-")] = match.group(2)
    return found


def requirements_pins():
    return pins((ROOT / "requirements.txt").read_text().splitlines())


def conda_pip_pins():
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in environment["dependencies"] if isinstance(d, dict))
    return pins(pip_section)


def test_pip_and_conda_routes_pin_the_same_versions():
    assert requirements_pins() == conda_pip_pins()


def test_every_requirement_is_pinned_exactly():
    for path in ("requirements.txt", "requirements-nodeps.txt"):
        for line in (ROOT / path).read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                assert PIN.match(line.strip()), f"{path}: '{line}' is not pinned with =="


def test_torch_is_the_pinned_cpu_build():
    assert requirements_pins()["torch"] == "2.13.0"
    assert importlib.metadata.version("torch").startswith("2.13.0")
    import torch

    assert torch.version.cuda is None, "torch is a CUDA build: run the set-up again from a clean .venv/"


def test_installed_versions_match_the_pins():
    for name, wanted in {**requirements_pins(), **pins((ROOT / "requirements-nodeps.txt").read_text().splitlines())}.items():
        installed = importlib.metadata.version(name)
        assert installed.split("+")[0] == wanted, f"{name} {installed} is installed but {wanted} is pinned"


def test_no_cuda_packages_are_installed():
    cuda = [d.metadata["Name"] for d in importlib.metadata.distributions()
            if d.metadata["Name"].lower().startswith("nvidia-")]
    assert cuda == []


def test_torchvision_transformers_and_gradcam_import_together():
    code = "import torchvision, transformers, pytorch_grad_cam; from transformers import AutoModel"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-500:]


def load_fix():
    spec = importlib.util.spec_from_file_location("fix_torchvision", ROOT / "scripts" / "fix_torchvision.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_torchvision_fix_guards_the_fake_registrations(tmp_path):
    fix = load_fix()
    broken = tmp_path / "_meta_registrations.py"
    broken.write_text("import torch\n" + fix.ANCHOR + '\n@torch.library.register_fake("torchvision::nms")\n'
                      "def meta_nms(dets, scores, iou_threshold):\n    return dets\n")
    assert fix.patch(broken) is True
    patched = broken.read_text()
    assert fix.BROKEN_DECORATOR not in patched and fix.GUARDED_DECORATOR in patched
    assert fix.patch(broken) is False, "the fix must be idempotent"


def test_the_torchvision_fix_has_nothing_left_to_do():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "fix_torchvision.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_jupyterlab_opens_without_the_news_pop_up(tmp_path):
    spec = importlib.util.spec_from_file_location("jupyterlab_quiet", ROOT / "scripts" / "jupyterlab_quiet.py")
    quiet = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quiet)
    # The set-up ran it for this environment (scripts/setup.sh, and postBuild on Binder).
    installed = json.loads(quiet.page_config().read_text())
    assert installed["disabledExtensions"][quiet.PLUGIN] is True
    # It keeps what the page config already holds, and running it twice changes nothing.
    path = tmp_path / "page_config.json"
    path.write_text(json.dumps({"disabledExtensions": {"other": True}, "x": 1}))
    assert quiet.quieten(path) is True and quiet.quieten(path) is False
    assert json.loads(path.read_text()) == {"disabledExtensions": {"other": True, quiet.PLUGIN: True}, "x": 1}
