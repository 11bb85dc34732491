"""Test settings shared by the unit tests and the notebook tests (nbval).

The notebook kernels inherit this environment, so the notebooks run on the
offline defaults here exactly as `make lesson` runs them.
"""

import os

for name, value in {"XAI_LESSON_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                    "TRANSFORMERS_OFFLINE": "1", "TQDM_DISABLE": "1"}.items():
    os.environ.setdefault(name, value)
