# Two commands on a fresh Linux machine with Python 3.10+:
#   make run    create .venv, install frontier, train configs/quick.yaml (embedded local Ray)
#   make test   create .venv, install frontier + test tools, run the test suite
#   make docs   regenerate docs/config.md (the configuration reference) from the config's docstrings
PYTHON ?= python3
VENV ?= .venv
# A CPU build of torch is enough here; on a GPU machine set TORCH="torch" to let pip pick the CUDA build.
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: run test install docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml examples/frontier-plugin-example/pyproject.toml
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[dev]"
	$(BIN)/pip install --quiet -e examples/frontier-plugin-example
	touch $@

install: $(VENV)/.installed

run: install
	$(BIN)/frontier train configs/quick.yaml

test: install
	RAY_AUTH_MODE=disabled $(BIN)/python -m pytest tests -q

docs: install
	$(BIN)/python -c "from frontier.distributed import config_reference; print(config_reference.reference(), end='')" > docs/config.md

clean:
	rm -rf $(VENV) runs
