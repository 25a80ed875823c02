# roan: `make demo` serves the example blog, `make test` runs the suite.
# Needs only Python >= 3.11 (with its venv module) and make.
#
#   make test PYTEST_ARGS="-k nginx -x"
#   make test PYTHON=python3.12 VENV=.venv312 DJANGO="Django==6.1.*"
#   make test EXTRAS=test,mysql DATABASE_URL=mysql://root@127.0.0.1:3306/roan
#   make test DEPS="django-import-export==4.3.0 tablib==3.7.0"

PYTHON ?= python3
VENV ?= .venv
# An extra pip requirement installed with roan, e.g. DJANGO="Django==6.1.*".
DJANGO ?=
# More pip requirements, space separated, e.g. the oldest supported versions:
# DEPS="django-import-export==4.3.0 tablib==3.7.0".
DEPS ?=
# roan's extras for `make venv` and `make test`, e.g. EXTRAS=test,mysql for MariaDB.
EXTRAS ?= test
PYTEST_ARGS ?=
HOST ?= 127.0.0.1
PORT ?= 8000

PY := $(VENV)/bin/python
MANAGE := $(PY) example/manage.py

export PIP_DISABLE_PIP_VERSION_CHECK := 1

.DEFAULT_GOAL := help
.PHONY: help venv demo test lint docs clean distclean

help:
	@echo "make demo       serve the example blog at http://$(HOST):$(PORT)/ (admin / admin)"
	@echo "make test       run the test suite (PYTEST_ARGS=... to pass options to pytest)"
	@echo "make lint       ruff check, ruff format --check, mypy"
	@echo "make docs       build the documentation into docs/_build/html (warnings fail)"
	@echo "make venv       create $(VENV) with roan and its test extras"
	@echo "make clean      remove caches, build output and the demo's database"
	@echo "make distclean  clean, and remove $(VENV)"

# $(call install,EXTRAS): create $(VENV) if missing, then `pip install -e .[EXTRAS]`
# (plus $(DJANGO) and $(DEPS)) unless a stamp shows it was done with the same inputs since
# pyproject.toml last changed.
define install
	@set -e; \
	if [ ! -x "$(PY)" ]; then \
	  $(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
	    || { echo "roan needs Python >= 3.11; try: make $@ PYTHON=python3.11" >&2; exit 1; }; \
	  echo ">> creating $(VENV) with $$($(PYTHON) --version)"; \
	  $(PYTHON) -m venv "$(VENV)" \
	    || { rm -rf "$(VENV)"; echo "venv creation failed; on Debian: apt-get install python3-venv" >&2; exit 1; }; \
	fi; \
	stamp="$(VENV)/.roan-installed-$(or $(1),base)"; \
	want='$(1)|$(DJANGO)|$(DEPS)'; \
	if [ ! -f "$$stamp" ] || [ "$$(cat "$$stamp")" != "$$want" ] || [ pyproject.toml -nt "$$stamp" ]; then \
	  echo ">> installing roan$(if $(1),[$(1)])$(if $(DJANGO), $(DJANGO))$(if $(DEPS), $(DEPS)) into $(VENV)"; \
	  "$(PY)" -m pip install --quiet -e "$(if $(1),.[$(1)],.)" $(if $(DJANGO),"$(DJANGO)") $(DEPS); \
	  echo "$$want" > "$$stamp"; \
	fi
endef

venv:
	$(call install,$(EXTRAS))

demo:
	$(call install,)
	$(MANAGE) migrate --noinput
	$(MANAGE) seed_demo
	@echo
	@echo "  Blog:   http://$(HOST):$(PORT)/"
	@echo "  Admin:  http://$(HOST):$(PORT)/admin/   (login admin / admin)"
	@echo "  Edit a post in the admin, reload its page: the footer's time changes,"
	@echo "  and the purge is listed under Roan > Purge attempts. Ctrl-C stops."
	@echo
	ROAN_EXAMPLE_HOSTS=$(HOST):$(PORT),localhost:$(PORT) $(MANAGE) runserver $(HOST):$(PORT)

test:
	$(call install,$(EXTRAS))
	@# axe-core for tests/admin/test_a11y.py (from the npm registry; the test run only uses it).
	@if [ ! -f tests/a11y/node_modules/axe-core/axe.min.js ] && command -v npm >/dev/null; then \
	  echo ">> installing axe-core into tests/a11y"; \
	  npm ci --prefix tests/a11y --no-audit --no-fund --loglevel=error; \
	fi
	$(PY) -m pytest $(PYTEST_ARGS)

lint:
	$(call install,dev)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# Sphinx: -W warnings are errors, --keep-going reports them all, -n every reference must
# resolve. The built site is docs/_build/html/index.html.
docs:
	$(call install,docs)
	$(VENV)/bin/sphinx-build -W --keep-going -n -q -b html docs docs/_build/html
	@echo "docs built: docs/_build/html/index.html"

clean:
	rm -rf build dist docs/_build .pytest_cache .mypy_cache .ruff_cache example/.cache tests/a11y/node_modules
	rm -f example/db.sqlite3 example/db.sqlite3-wal example/db.sqlite3-shm
	rm -f tests/*.sqlite3 tests/*.sqlite3-wal tests/*.sqlite3-shm
	find . \( -path './.venv*' -o -path ./$(VENV) -o -path ./.git \) -prune \
	  -o \( -name __pycache__ -o -name '*.egg-info' \) -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
