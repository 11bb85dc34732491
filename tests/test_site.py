"""The offline website preview: every page renders, every internal link resolves,
and a real browser draws an episode."""

import importlib.util
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("build_site", ROOT / "scripts" / "build_site.py")
build_site = importlib.util.module_from_spec(spec)
spec.loader.exec_module(build_site)
CONFIG = yaml.safe_load((ROOT / "config.yaml").read_text())
TARGETS = re.compile(r'(?:href|src)="([^"]+)"')


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    folder, pages = build_site.build(tmp_path_factory.mktemp("preview") / "site")
    return folder, pages


def test_every_configured_page_is_built(site):
    folder, pages = site
    for section in ("episodes", "learners", "instructors", "profiles"):
        for name in CONFIG.get(section) or []:
            assert Path(name).stem + ".html" in pages
    assert all((folder / page).stat().st_size > 500 for page in pages)


@pytest.mark.parametrize("episode", CONFIG["episodes"])
def test_each_episode_renders_with_folded_solutions(site, episode):
    folder, _ = site
    built = (folder / (Path(episode).stem + ".html")).read_text(encoding="utf-8")
    markdown = (ROOT / "episodes" / episode).read_text(encoding="utf-8")
    title = build_site.split_front_matter(markdown)[0]["title"]
    assert f"<h1>{title}</h1>" in built.replace("&#39;", "'").replace("’", "'")
    solutions = len(re.findall(r"^:{3,}\s*solution\s*$", markdown, re.M))
    assert built.count('<details class="solution">') == solutions
    assert len(re.findall(r'class="[^"]*\bchallenge\b', built)) == len(re.findall(r"^:{3,}\s*challenge\s*$", markdown, re.M))
    assert ":::" not in built, "a fenced div was not recognised"


def test_every_internal_link_and_image_resolves(site):
    folder, pages = site
    broken = []
    for page in pages:
        for target in TARGETS.findall((folder / page).read_text(encoding="utf-8")):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                continue
            if not (folder / target.split("#")[0]).exists():
                broken.append(f"{page}: {target}")
    assert broken == []


def test_every_image_has_alt_text(site):
    folder, pages = site
    for page in pages:
        for tag in re.findall(r"<img [^>]*>", (folder / page).read_text(encoding="utf-8")):
            assert re.search(r'alt="[^"]+"', tag), f"{page}: {tag[:120]}"


def test_an_episode_in_a_real_headless_browser(site, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Chromium is not installed (on Debian: apt-get install chromium); "
                    "the preview was still built and its links checked above.")
    page = (site[0] / "01-introduction.html").resolve().as_uri()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    screenshot = tmp_path / "episode.png"
    subprocess.run([browser, *flags, f"--screenshot={screenshot}", "--window-size=1280,1800", page],
                   capture_output=True, timeout=120, check=True)
    assert screenshot.exists() and screenshot.stat().st_size > 20_000
    dom = subprocess.run([browser, *flags, "--dump-dom", page], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert "Challenge 2: How sure is the model?" in dom and "<details" in dom
    shutil.copy(screenshot, ROOT / "build" / "preview-screenshot.png")
