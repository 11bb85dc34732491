"""notebook_setup fixes the thread count, so sums are added in the same order on every machine."""

import pytest
import torch
from threadpoolctl import threadpool_info

import xai_lesson


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    xai_lesson.fix_threads(before)


def test_fix_threads_sets_torch_and_the_blas_pools(restore_threads, monkeypatch):
    monkeypatch.setenv("XAI_LESSON_NUM_THREADS", "1")
    assert xai_lesson.fix_threads() == 1
    assert torch.get_num_threads() == 1
    assert all(pool["num_threads"] == 1 for pool in threadpool_info())
    assert xai_lesson.fix_threads(2) == 2 and torch.get_num_threads() == 2


@pytest.mark.parametrize("setting", ["two", "1.5", ""])
def test_a_bad_thread_setting_says_what_is_expected(restore_threads, monkeypatch, setting):
    monkeypatch.setenv("XAI_LESSON_NUM_THREADS", setting)
    with pytest.raises(ValueError, match="XAI_LESSON_NUM_THREADS must be a whole number"):
        xai_lesson.fix_threads()


@pytest.mark.parametrize("threads", [0, -1, True, 2.0])
def test_a_bad_thread_count_says_what_is_expected(restore_threads, threads):
    with pytest.raises(ValueError, match="at least 1"):
        xai_lesson.fix_threads(threads)
