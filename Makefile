# The two commands of the README: `make reproduce` and `make test`.
# Both create .venv with the pinned packages on first use (pip takes torch from this machine's disk).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
NBSTRIPOUT := $(abspath $(BIN))/nbstripout
export HF_HUB_OFFLINE := 1
export PYTHONHASHSEED := 0

.PHONY: reproduce test unit normalize-notebooks venv clean-venv rehearse

venv: $(STAMP)

# git commits notebooks through nbstripout (no outputs, cell ids 0, 1, ...); the committed notebooks
# are in that form already (tests/test_clean_tree.py), so a fresh clone stays clean after `make`.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install -e '.[notebooks,test,tensorboard]'
	-git config filter.nbstripout.clean "$(NBSTRIPOUT)" 2>/dev/null
	-git config filter.nbstripout.smudge cat 2>/dev/null
	-git config diff.ipynb.textconv "$(NBSTRIPOUT) -t" 2>/dev/null
	touch $@

# Every notebook in the smoke profile (synthetic data, CPU), then the tables notebook.
reproduce: $(STAMP)
	$(BIN)/pna reproduce

# Unit tests and the notebooks (nbval, smoke defaults).
# The notebooks write into a scratch results/runs folder, so the committed results stay untouched.
test: $(STAMP)
	scratch=$$(mktemp -d) && PNA_RESULTS_DIR=$$scratch/results PNA_RUNS_DIR=$$scratch/runs \
	  $(BIN)/python -m pytest tests notebooks pna --doctest-modules --nbval-lax --nbval-current-env -p no:cacheprovider --durations=20; \
	  status=$$?; rm -rf $$scratch; exit $$status

# Every paper row end to end on CPU at the real sizes (tiny official-format data, 2 iterations with a
# resume, paper-mode evaluation, a bf16 step), one row per dataset through its notebook; writes
# results/rehearsal/cpu.csv.
rehearse: $(STAMP)
	$(BIN)/pna rehearse --device cpu --papermill

unit: $(STAMP)
	$(BIN)/python -m pytest tests pna --doctest-modules -p no:cacheprovider

# Rewrite the notebooks in the form the git filter commits (after editing them outside git).
normalize-notebooks: $(STAMP)
	$(NBSTRIPOUT) notebooks/*.ipynb

clean-venv:
	rm -rf $(VENV)
