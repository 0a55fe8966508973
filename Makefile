# Two commands a fresh machine needs (README):  make quick   |   make test
PY      ?= python3
VENV    ?= .venv
VPY     := $(VENV)/bin/python
STAMP   := $(VENV)/.installed-$(shell cat requirements.txt constraints.txt pyproject.toml | sha256sum | cut -c1-12)
PROFILE ?= quick
WORKERS ?= 2

.PHONY: setup constraints data quick smoke paper paper-cpu paper-two-stage paper-two-stage-cosine baselines peer-tiger unigrec test test-fast test-browser diagnosis

# The git diff driver and the nbstripout filter are set with paths relative to the repository: git runs them from
# the top of the working tree, so each clone and each worktree (worktrees share one .git/config) uses its own venv.
$(VPY):
	$(PY) -m venv $(VENV)

$(STAMP): requirements.txt constraints.txt pyproject.toml | $(VPY)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -r requirements.txt -c constraints.txt
	$(VPY) -m pip install -q --no-deps -e .
	$(VPY) -m ipykernel install --prefix $(VENV) --name python3 --display-name "Python 3 (diger)" >/dev/null
	-git config --local diff.jupyternotebook.command "$(VENV)/bin/git-nbdiffdriver diff" 2>/dev/null
	-git config --local filter.nbstripout.clean "$(VENV)/bin/nbstripout" 2>/dev/null
	-git config --local filter.nbstripout.smudge cat 2>/dev/null
	@touch $@

setup: $(STAMP)

# After a change to requirements.txt: pin everything it resolves to (scripts/write_constraints.py).
constraints: | $(VPY)
	$(VPY) -m scripts.write_constraints

data: setup
	$(VPY) -m diger_lib.cli setup-data

# The main job: real Beauty through every notebook, sized for a laptop CPU (< 30 min on 2 cores).
# Rerunning a profile replaces its finished runs (git diff shows the change); RUNNER_ARGS="--skip-finished"
# continues an interrupted batch instead, RUNNER_ARGS="--set KEY=VALUE" overrides a parameter on every step.
quick: data
	$(VPY) -m diger_lib.runner --profile quick $(RUNNER_ARGS)

smoke: data
	$(VPY) -m diger_lib.runner --profile smoke $(RUNNER_ARGS)

# The paper's settings (meant for a GPU; resumable on CPU).
paper: data
	$(VPY) -m diger_lib.runner --profile paper $(RUNNER_ARGS)

# Every table and figure of the paper at a scale this CPU can run (about 10 hours on 2 cores); each run resumes, so
# calling it again continues the batch. Then the README's Results block is regenerated from figures/table*.md.
paper-cpu: data
	$(VPY) -m diger_lib.runner --profile paper_cpu --skip-finished --workers $(WORKERS) $(RUNNER_ARGS)
	$(VPY) -m diger_lib.cli readme-results

# Two-Stage on Beauty at the paper's full size, 115 min per call; run it again to resume until early stopping.
paper-two-stage: data
	$(VPY) -m diger_lib.runner --profile paper_two_stage $(RUNNER_ARGS)

# The same at full size with 500 warm-up steps + cosine over 20 epochs (the diagnosis study's recipe), and DIGER (FrqUD)
# beside it (two workers, one thread each); run it again to resume (finished notebooks 02/03 are skipped).
paper-two-stage-cosine: data
	$(VPY) -m diger_lib.runner --profile paper_two_stage_cosine --skip-finished --workers $(WORKERS) $(RUNNER_ARGS)

# Table 3's conventional rows with cornac (notebook 03b: SASRec, MF, BERT4Rec, LightGCN on Beauty, Instruments, Yelp; README
# "Conventional baselines (cornac)" sizes it). Resumable per run with --skip-finished; SASRec is UniGRec's teacher.
baselines: data
	$(VPY) -m diger_lib.runner --profile baselines --skip-finished $(RUNNER_ARGS)

# Issue 10, part 2: cornac's TIGER beside our Two-Stage at the diagnosis budget (notebook 04b; needs paper_cpu's
# Beauty embeddings and tokenizer in $DIGER_ARTIFACTS/paper_cpu). Speed alone: benchmarks/bench_peer_tiger.py.
peer-tiger: data
	$(VPY) -m diger_lib.runner --profile peer_tiger --skip-finished $(RUNNER_ARGS)

# Issue 10, part 3: UniGRec's Table 3 (M0-M6) with STE and DIGER on paper_cpu's Beauty tokenizer (needs
# $DIGER_ARTIFACTS/paper_cpu's Beauty notebooks 02/03; M4-M6 the SASRec teacher of `make baselines`).
unigrec: data
	$(VPY) -m diger_lib.runner --profile unigrec --skip-finished --workers $(WORKERS) $(RUNNER_ARGS)

test: data
	$(VPY) -m pytest -q

test-fast: data
	$(VPY) -m pytest -q -m "not notebooks and not benchmarks"

# The browser check (needs Debian's chromium: apt-get install chromium); DIGER_SCREENSHOT=path keeps notebook 04's.
test-browser: data
	$(VPY) -m pip install -q -r requirements-browser.txt
	$(VPY) -m pytest -q -m browser tests/test_browser.py
