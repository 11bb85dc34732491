"""Shared plumbing and tested reference methods for the lesson
"Explainable AI for deep learning".

Each notebook starts with ``xai_lesson.notebook_setup()``. The loaders in
``xai_lesson.models`` and ``xai_lesson.data`` work with no network; the method
modules (saliency, probing, tracing, ...) hold the reference version of the code
that the episodes build by hand.
"""

import os
import random
import warnings

import numpy as np

# OpenMP threads that spin while they wait slow torch down many times over when
# another program shares the CPU (a second notebook, a browser). Sleeping threads
# cost nothing when the CPU is free. This must be set before torch is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"


def seed_everything(seed=0):
    """Seed Python, NumPy and torch so that a notebook gives the same numbers every run."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}.")
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return seed


def notebook_setup(seed=0):
    """Prepare a notebook kernel: seed everything and silence output that changes between runs.

    Progress bars and library warnings that print file paths differ from one
    machine to the next, which would make the notebook tests fail for no reason.
    """
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*torchvision.*")
    warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm without ipywidgets
    import datasets
    import transformers

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    fix_threads()
    return seed_everything(seed)


def fix_threads(threads=None):
    """Use the same number of threads on every machine (``$XAI_LESSON_NUM_THREADS``, default 2).

    A sum split over more threads is added up in another order, so its last
    digits change with the number of cores. Fixing the count makes a learner's
    8-core laptop compute what the 2-core test machine computed. The lesson's
    time budgets are set for 2 cores. Returns the number of threads.
    """
    if threads is None:
        setting = os.environ.get("XAI_LESSON_NUM_THREADS", "2")
        try:
            threads = int(setting)
        except ValueError:
            raise ValueError(f"XAI_LESSON_NUM_THREADS must be a whole number such as 2, got {setting!r}.") from None
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a whole number of at least 1, got {threads!r}.")
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    threadpool_limits(limits=threads)  # NumPy's and scikit-learn's BLAS and OpenMP pools
    return threads
