# timegrpo: `make test` and `make demo` set everything up on a fresh machine (they install first if needed).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

# Tests and the demo never reach the Hugging Face Hub or wandb's servers.
export HF_HUB_OFFLINE = 1
export WANDB_MODE = offline
export TOKENIZERS_PARALLELISM = false

.PHONY: install test test-slow lint demo bench clean

install: $(STAMP)

# torch/torchvision pins live in constraints.txt (CPU wheels that match); setup.cfg leaves them open.
$(STAMP): setup.cfg pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

# The main job on its embedded default: synthetic benchmark -> tiny model -> SFT -> GRPO -> report (CPU, ~9 min).
demo: $(STAMP)
	$(VENV)/bin/timegrpo demo --out outputs/demo $(DEMO_ARGS)

# timegrpo vs TRL's GRPOTrainer, step for step, on CPU (1-3 min): writes BENCHMARKS.md (and outputs/bench.json).
REAL_VIDEOS := $(wildcard ../shared/data/videos)
bench: $(STAMP)
	$(PY) -m timegrpo.cli bench --suite cpu --vs-trl $(if $(REAL_VIDEOS),--real-videos $(REAL_VIDEOS)) \
		--json-out outputs/bench.json --markdown BENCHMARKS.md $(BENCH_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check timegrpo tests

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
