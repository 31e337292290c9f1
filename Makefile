# Two commands on a fresh machine: `make run` (main job) and `make test` (tests).
# `make run` REPRODUCES: it trains the default suite into $(RERUN_RESULTS)/ (never into the
# committed results/), reruns whatever is stale there, then compares every new record with the
# committed one row by row. REPORT.md stays generated from results/ (`make report`).
VENV ?= .venv
PYTHON ?= python3
export HF_HUB_OFFLINE = 1

$(VENV)/.installed: pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -e ".[test,embeddings]"
	@$(MAKE) --no-print-directory fashion-mnist
	touch $@

# The 20-class embedded data needs Debian's dataset-fashion-mnist (30 MB): installed when this
# runs as root with apt; otherwise the exact command is printed and the data loader says it again.
FASHION_DIR = /usr/share/datasets/fashion-mnist
.PHONY: fashion-mnist
fashion-mnist:
	@test -f $(FASHION_DIR)/train-images-idx3-ubyte.gz || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q dataset-fashion-mnist >/dev/null; }; \
	  fi; \
	  test -f $(FASHION_DIR)/train-images-idx3-ubyte.gz || \
	    echo "NOTE: Fashion-MNIST is missing: run 'sudo apt-get install dataset-fashion-mnist' (the default suites need it)"; }

RERUN_RESULTS ?= results-rerun

.PHONY: setup run test report
setup: $(VENV)/.installed

run: $(VENV)/.installed
	$(VENV)/bin/bench run --suite default --results $(RERUN_RESULTS) --rerun-stale --no-report
	$(VENV)/bin/bench compare --suite default --new $(RERUN_RESULTS) --committed results

# REPORT.md and results/figures/ from the committed records under results/.
report: $(VENV)/.installed
	$(VENV)/bin/bench report

# pytest exits 5 when it collects no test: that is not a failure here. The tests run on every
# core (pytest-xdist); tests sharing a resource (the Slurm cluster) keep to one worker
# (--dist loadgroup); docs/test-profile.md has the profile and the timings.
TEST_WORKERS ?= auto
test: $(VENV)/.installed
	$(VENV)/bin/python -m pytest -n $(TEST_WORKERS) --dist loadgroup --durations=25; code=$$?; [ $$code -eq 0 ] || [ $$code -eq 5 ]

# The CPU-scale ablation sweeps behind REPORT.md's plots (about 40 minutes on 2 cores), into the
# committed results/: records made by other code (stale) are rerun, then REPORT.md regenerated.
# The training-free trick's Lambda curve needs no sweep: every default-suite record with a linear
# head carries it (evaluation.trick_lambdas, 3 seeds); sweeps/ablation-trick-lambda-cpu.yaml adds
# Table 1's exact Lambdas when wanted (`bench sweep sweeps/ablation-trick-lambda-cpu.yaml`).
CPU_SWEEPS = csra-heads csra-lambda csra-mode csra-norm imlgcn-nodes probmcl-tau probmcl-alpha probmcl-lambda probmcl-overlap probmcl-stage2 probmcl-probe-only probmcl-stage1
.PHONY: ablations
ablations: $(VENV)/.installed
	for s in $(CPU_SWEEPS); do $(VENV)/bin/bench sweep sweeps/ablation-$$s-cpu.yaml --executor local --rerun-stale || exit 1; done
	$(VENV)/bin/bench report
