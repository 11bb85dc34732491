# Two commands on a fresh machine:
#   make lesson   set everything up, then run every notebook in teaching order
#   make test     run the tests: lesson checks, helper-package tests, notebooks (nbval)
PYTHON ?= python3
VENV_PYTHON := .venv/bin/python

.PHONY: help setup lesson test notebooks site check clean

help:
	@echo "make lesson    set up .venv/ (first time only) and run every notebook, with a timing table"
	@echo "make test      set up if needed, then run all the tests"
	@echo "make notebooks (authors) re-execute the notebooks in place, to commit their outputs"
	@echo "make site      build the lesson website with sandpaper (needs R) in build/site/docs/"
	@echo "make check     check your set-up: versions, models and data, with fixes"
	@echo "make clean     remove build/ (keeps .venv/ and the data)"

setup:
	@PYTHON=$(PYTHON) bash scripts/setup.sh

lesson: setup
	$(VENV_PYTHON) scripts/run_lesson.py

test: setup
	$(VENV_PYTHON) -m pytest

notebooks: setup
	$(VENV_PYTHON) scripts/run_lesson.py --in-place

# Needs R and the Workbench's sandpaper, not the .venv: the script says how to install them.
site:
	$(PYTHON) scripts/sandpaper_site.py

check: setup
	$(VENV_PYTHON) -m xai_lesson.check_setup

clean:
	rm -rf build
