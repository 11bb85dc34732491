"""The GitHub workflows: the Workbench's own (from sandpaper) and the lesson's notebook
workflow parse, and every path they filter on exists in the repository."""

import re
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))
# The Workbench workflows sandpaper::update_github_workflows() installs.
WORKBENCH = {"docker_apply_cache.yaml", "docker_build_deploy.yaml", "docker_pr_receive.yaml",
             "pr-close-signal.yaml", "pr-comment.yaml", "pr-post-remove-branch.yaml",
             "pr-preflight.yaml", "update-cache.yaml", "update-workflows.yaml"}
# Ignored paths that need not exist yet: the deploy workflow writes this file itself
# (carpentries/actions/record-container-version) after its first build.
WRITTEN_BY_A_WORKFLOW = {".github/workbench-docker-version.txt"}


def tracked_files():
    result = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip("not a git checkout: cannot list the tracked files")
    return result.stdout.splitlines()


def github_glob(pattern):
    """GitHub's path-filter glob as a regex: ** crosses folders, * and ? do not."""
    regex = ""
    for token in re.findall(r"\*\*|\*|\?|[^*?]+", pattern):
        regex += {"**": ".*", "*": "[^/]*", "?": "[^/]"}.get(token, re.escape(token))
    return re.compile(regex + r"\Z")


def triggers(workflow):
    on = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` key as True
    return on if isinstance(on, dict) else {name: None for name in ([on] if isinstance(on, str) else on)}


def test_the_workbench_workflows_sit_next_to_the_lesson_workflow():
    names = {path.name for path in WORKFLOWS}
    assert WORKBENCH <= names, f"missing Workbench workflows: {sorted(WORKBENCH - names)}"
    assert "lesson.yml" in names


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_each_workflow_parses_and_filters_on_paths_that_exist(path):
    workflow = yaml.safe_load(path.read_text())
    assert isinstance(workflow, dict) and workflow.get("name") and workflow.get("jobs"), path.name
    files = tracked_files() + [f".github/workflows/{p.name}" for p in WORKFLOWS]
    for event, settings in triggers(workflow).items():
        for key in ("paths", "paths-ignore"):
            for pattern in (settings if isinstance(settings, dict) else {}).get(key, []):
                pattern = pattern.lstrip("!")
                if key == "paths-ignore" and pattern in WRITTEN_BY_A_WORKFLOW:
                    continue
                glob = github_glob(pattern)
                assert any(glob.match(f) for f in files), f"{path.name}: {event} {key} '{pattern}' matches no file"


def test_the_lesson_workflow_runs_on_everything_ci_checks():
    on = triggers(yaml.safe_load((ROOT / ".github" / "workflows" / "lesson.yml").read_text()))
    assert on["push"]["paths"] == on["pull_request"]["paths"]
    paths = on["push"]["paths"]
    globs = [github_glob(p) for p in paths]
    # Every file .ci/run's steps read: the lesson, the package, the tests and the tooling.
    for needed in ("episodes/01-introduction.md", "notebooks/01-introduction.ipynb", "xai_lesson/__init__.py",
                   "tests/test_site.py", "scripts/lesson_check.py", "config.yaml", "CITATION.cff",
                   "CONTRIBUTING.md", "index.md", "learners/setup.md", "Makefile", ".ci/run",
                   "requirements.txt", ".github/workflows/lesson.yml"):
        assert any(g.match(needed) for g in globs), f"lesson.yml does not run when {needed} changes"


def test_the_glob_follows_github_rules():
    assert github_glob("*.md").match("index.md") and not github_glob("*.md").match("episodes/a.md")
    assert github_glob("episodes/**").match("episodes/fig/a.png")
    assert github_glob(".github/workflows/**.yaml").match(".github/workflows/pr-comment.yaml")
    assert not github_glob(".github/workflows/**.yaml").match(".github/workflows/lesson.yml")
