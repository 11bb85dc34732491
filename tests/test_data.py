"""The data files: checksums, contents, and errors that say how to get a missing file."""

import numpy as np
import pytest

from xai_lesson import data


def test_every_data_file_matches_its_checksum():
    assert data.verify_checksums() == []
    assert len(data.read_manifest()) >= 3


def test_a_changed_file_fails_the_checksum(tmp_path, monkeypatch):
    (tmp_path / "a.txt").write_text("original")
    (tmp_path / data.MANIFEST).write_text(f"{data.sha256(tmp_path / 'a.txt')}  a.txt\n")
    monkeypatch.setenv("XAI_LESSON_DATA", str(tmp_path))
    assert data.verify_checksums() == []
    (tmp_path / "a.txt").write_text("changed")
    assert data.verify_checksums()[0].startswith(f"a.txt: checksum differs from {data.MANIFEST}")
    (tmp_path / "a.txt").unlink()
    assert "missing" in data.verify_checksums()[0]


def test_sentiment_snippets_are_all_there_with_consistent_labels():
    snippets = data.load_sentiment()
    ratings, labels = np.asarray(snippets["rating"]), np.asarray(snippets["label"])
    assert 10_500 < len(snippets) <= 10_605
    assert ratings.min() >= -4 and ratings.max() <= 4
    assert np.array_equal(labels, (ratings > 0).astype(int))


def test_min_abs_rating_drops_the_near_neutral_snippets():
    strong = data.load_sentiment(min_abs_rating=1.0)
    assert np.abs(np.asarray(strong["rating"])).min() >= 1.0
    with pytest.raises(ValueError, match="0 or more"):
        data.load_sentiment(min_abs_rating=-1)


def test_balanced_sample_is_balanced_and_reproducible():
    snippets = data.load_sentiment(min_abs_rating=1.0)
    first = data.balanced_sample(snippets, 50, seed=3)
    assert np.bincount(first["label"]).tolist() == [50, 50]
    assert first["id"] == data.balanced_sample(snippets, 50, seed=3)["id"]
    with pytest.raises(ValueError, match="Ask for fewer"):
        data.balanced_sample(snippets, 10**6)


def test_pos_silver_labels_align_with_words():
    tagged = data.load_pos_silver()
    assert len(tagged) == 2000
    assert all(len(w) == len(u) == len(t) for w, u, t in zip(tagged["words"], tagged["upos"], tagged["tag"]))
    assert {"NOUN", "VERB", "ADJ", "DET"} <= {tag for tags in tagged["upos"] for tag in tags}


def test_a_missing_file_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("XAI_LESSON_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"python -m xai_lesson\.prepare"):
        data.load_sentiment()
