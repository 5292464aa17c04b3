# Two commands: `make demo` (demo data -> train -> publish -> API) and `make test`.
# Both create .venv and install the project into it on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,spark]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/recsys demo

test: $(STAMP)
	OPENBLAS_NUM_THREADS=1 $(BIN)/python -m pytest

clean:
	rm -rf $(VENV) runs demo-data .pytest_cache
