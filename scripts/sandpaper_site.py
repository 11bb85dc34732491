"""Build the lesson website with the Carpentries Workbench, as the published site is built.

    python3 scripts/sandpaper_site.py    # what `make site` runs; open build/site/docs/index.html

It runs `sandpaper::build_lesson()` from the lesson's root, with sandpaper's
site folder moved to build/site/ (sandpaper's SANDPAPER_SITE), so the lesson
itself is never touched. The HTML lands in build/site/docs/. Next to it,
build/site/sources.sha256 records the lesson sources the site was built from,
so tests/test_site.py can tell a fresh site from a stale one.

It needs R and the Workbench's R packages (sandpaper, varnish, pegboard,
tinkr); without them it stops and says how to install them. It uses only
Python's standard library, so it runs without the lesson's .venv.
"""

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "build" / "site"
DOCS = SITE / "docs"
STAMP = SITE / "sources.sha256"
# Where ../shared/workbench/check installs the Workbench packages (its WORKBENCH_R_LIB).
R_LIBRARY = Path(os.environ.get("WORKBENCH_R_LIB", "/usr/local/lib/R/site-library"))
# Everything sandpaper reads to build the site.
SOURCES = ("config.yaml", "index.md", "CITATION.cff", "LICENSE.md", "CONTRIBUTING.md",
           "CODE_OF_CONDUCT.md", "links.md", "episodes", "learners", "instructors", "profiles")
OFFLINE_TOOL = ROOT.parent / "shared" / "workbench" / "check"

BUILD_R = """
# cffr (the citation page) looks CRAN up when it loads; offline that only warns
invisible(suppressWarnings(requireNamespace("cffr", quietly = TRUE)))
sandpaper::build_lesson(".", preview = FALSE, quiet = TRUE)
"""


def how_to_install():
    text = ("Install R (https://cran.r-project.org/, or e.g. `apt-get install r-base` on Debian), "
            "then the Workbench from the Carpentries R-universe, as "
            "https://carpentries.github.io/workbench/ says; in R:\n"
            '  install.packages(c("sandpaper", "varnish", "pegboard", "tinkr"),\n'
            '    repos = c("https://carpentries.r-universe.dev/", getOption("repos")))')
    if OFFLINE_TOOL.exists():
        text += f"\nOffline on this machine, `{os.path.relpath(OFFLINE_TOOL, ROOT)} . --build` installs them."
    return text


def r_environment():
    env = dict(os.environ, SANDPAPER_SITE=str(SITE))
    if R_LIBRARY.is_dir():
        env["R_LIBS"] = os.pathsep.join(filter(None, [str(R_LIBRARY), os.environ.get("R_LIBS")]))
    return env


def missing_tools():
    """Why sandpaper cannot build the site here, or None when it can."""
    if shutil.which("Rscript") is None:
        return "R is not installed (no Rscript on the PATH)"
    check = subprocess.run(
        ["Rscript", "--vanilla", "-e",
         'quit(status = !all(vapply(c("sandpaper", "varnish", "pegboard", "tinkr"), '
         'requireNamespace, logical(1), quietly = TRUE)))'],
        env=r_environment(), capture_output=True, text=True)
    if check.returncode != 0:
        return f"the R packages sandpaper, varnish, pegboard and tinkr are not all installed (R library: {R_LIBRARY})"
    return None


def sources_digest():
    """SHA-256 over the path and bytes of every file sandpaper builds the site from."""
    digest = hashlib.sha256()
    for name in SOURCES:
        path = ROOT / name
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            if file.is_file():
                digest.update(file.relative_to(ROOT).as_posix().encode() + b"\0")
                digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()


def is_fresh():
    """True when build/site/docs was built by this script from the current sources."""
    return (DOCS / "index.html").is_file() and STAMP.is_file() and STAMP.read_text().strip() == sources_digest()


def build():
    """Build the site from scratch into build/site/; return the folder of HTML pages."""
    reason = missing_tools()
    if reason:
        raise RuntimeError(f"Cannot build the lesson website: {reason}.\n{how_to_install()}")
    digest = sources_digest()
    shutil.rmtree(SITE, ignore_errors=True)  # no page of a removed episode survives
    SITE.mkdir(parents=True)
    result = subprocess.run(["Rscript", "--vanilla", "-e", BUILD_R], cwd=ROOT, env=r_environment(),
                            capture_output=True, text=True)
    if result.returncode != 0 or not (DOCS / "index.html").is_file():
        raise RuntimeError("sandpaper::build_lesson() failed:\n" + (result.stdout + result.stderr)[-3000:])
    STAMP.write_text(digest + "\n")
    return DOCS


def main():
    start = time.perf_counter()
    try:
        docs = build()
    except RuntimeError as error:
        sys.exit(str(error))
    pages = len(list(docs.rglob("*.html")))
    print(f"Built {pages} HTML pages with sandpaper in {time.perf_counter() - start:.0f} s: "
          f"open {docs.relative_to(ROOT) / 'index.html'}")


if __name__ == "__main__":
    main()
