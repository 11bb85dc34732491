# Two commands on a fresh machine:
#   make lesson   set everything up, then run every notebook in teaching order
#   make test     run the tests: lesson checks, helper-package tests, the notebooks (nbval)
PYTHON ?= python3
VENV_PYTHON := .venv/bin/python

# Another CPU, simulated on this one, for `make test-portable`: the kernel paths of
# torch (ATen), MKL, oneDNN and OpenBLAS, and the number of threads the notebooks use.
# The last digits of printed floats move; the notebooks' assertions and every word,
# token and count must not. SETUP=avx2 is a laptop without AVX-512; SETUP=scalar is
# torch's portable kernels with three threads.
SETUP ?= avx2
SETUP_avx2 := ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2 \
	OPENBLAS_CORETYPE=Haswell XAI_LESSON_NUM_THREADS=1
SETUP_scalar := ATEN_CPU_CAPABILITY=default MKL_ENABLE_INSTRUCTIONS=SSE4_2 ONEDNN_MAX_CPU_ISA=SSE41 \
	OPENBLAS_CORETYPE=Nehalem XAI_LESSON_NUM_THREADS=3

.PHONY: help setup lesson test test-learners test-portable notebooks site check clean

help:
	@echo "make lesson    set up .venv/ (first time only) and run every notebook, with a timing table"
	@echo "make test      set up if needed, then run the tests: lesson checks, package tests, notebooks"
	@echo "make test-learners  (authors, CI) run the learners' code-along notebooks under nbval"
	@echo "make test-portable  (authors, CI) re-test the notebooks on a simulated other CPU (SETUP=avx2 or scalar)"
	@echo "make notebooks (authors) re-execute the notebooks in place, to commit their outputs"
	@echo "make site      build the lesson website with sandpaper (needs R) in build/site/docs/"
	@echo "make check     check your set-up: versions, models and data, with fixes"
	@echo "make clean     remove build/ (keeps .venv/ and the data)"

setup:
	@PYTHON=$(PYTHON) bash scripts/setup.sh

lesson: setup
	$(VENV_PYTHON) scripts/run_lesson.py

# The authors' notebooks, not the learners' copies: those run the same computations (with the
# reference in place of each exercise), so running them here doubled the time of `make test`.
# tests/test_notebooks.py still checks here that they are generated from the current notebooks;
# `make test-learners` (run by CI) executes them.
test: setup
	$(VENV_PYTHON) -m pytest tests notebooks/[0-9]*.ipynb

test-learners: setup
	$(VENV_PYTHON) -m pytest notebooks/code-along/[0-9]*.ipynb

test-portable: setup
	@test -n "$(SETUP_$(SETUP))" || { echo "SETUP must be avx2 or scalar, not '$(SETUP)'." >&2; exit 1; }
	env $(SETUP_$(SETUP)) $(VENV_PYTHON) -m pytest notebooks/[0-9]*.ipynb

notebooks: setup
	$(VENV_PYTHON) scripts/run_lesson.py --in-place

# Needs R and the Workbench's sandpaper, not the .venv: the script says how to install them.
site:
	$(PYTHON) scripts/sandpaper_site.py

check: setup
	$(VENV_PYTHON) -m xai_lesson.check_setup

clean:
	rm -rf build
