# medpipe: `make demo` runs the main job on the bundled sample archive, `make test` runs the suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_DIR ?= demo-output

.PHONY: venv test lint demo bench clean browser server

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check medpipe flows tests bench

# the browser test drives Debian's chromium (Playwright's own download does not work here)
CHROMIUM ?= /usr/bin/chromium

test: lint browser
	$(BIN)/python -m pytest

browser:
	@test -x $(CHROMIUM) || { \
	  echo "installing chromium for the browser test"; \
	  SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
	    chromium fonts-liberation; }

# a local Prefect server with its embedded SQLite database (the UI at http://127.0.0.1:4200)
server: $(STAMP)
	PREFECT_SERVER_ANALYTICS_ENABLED=false $(BIN)/prefect server start --host 127.0.0.1 --port 4200

demo: $(STAMP)
	$(BIN)/medpipe demo --out $(DEMO_DIR)

bench: $(STAMP)
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) $(DEMO_DIR)
