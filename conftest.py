"""Test settings shared by the unit tests and the notebook tests (nbval).

The notebook kernels inherit this environment, so the notebooks run on the
offline defaults here exactly as `make lesson` runs them.
"""

import os
from pathlib import Path

# nbval compares printed floats within a tolerance, and everything else exactly.
pytest_plugins = ["tests.nbval_tolerance"]

for name, value in {"XAI_LESSON_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                    "TRANSFORMERS_OFFLINE": "1", "TQDM_DISABLE": "1",
                    # Before torch is imported: spinning OpenMP threads slow a shared CPU down.
                    "OMP_WAIT_POLICY": "PASSIVE"}.items():
    os.environ.setdefault(name, value)
# The notebooks save their figures here, not over the committed ones in episodes/fig/.
os.environ.setdefault("XAI_LESSON_FIGURE_DIR", str(Path(__file__).resolve().parent / "build" / "test-figures"))
