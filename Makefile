# Tilewatch: `make run` opens the app on the demo data, `make test` runs every test.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
DEMO   := demo-data
export QT_QPA_PLATFORM ?= offscreen
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: run test bench installer demo sysdeps clean

$(STAMP): pyproject.toml
	@$(MAKE) --no-print-directory sysdeps
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { \
	  echo "Cannot create $(VENV): install Python's venv module (Debian: apt-get install python3-venv)"; exit 2; }
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $@

# Shared libraries Qt needs even offscreen. Installed only where they are
# missing and we are root on a Debian-like system; otherwise say what to install.
QT_LIBS := libEGL.so.1 libGL.so.1 libxkbcommon.so.0 libfontconfig.so.1 libdbus-1.so.3
sysdeps:
	@missing=""; for l in $(QT_LIBS); do ldconfig -p 2>/dev/null | grep -q "$$l" || missing="$$missing $$l"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "Installing Qt's system libraries:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      libegl1 libgl1 libxkbcommon0 libxkbcommon-x11-0 libfontconfig1 libdbus-1-3 >/dev/null; \
	  else echo "Qt needs these system libraries:$$missing (Debian: libegl1 libgl1 libxkbcommon0 libfontconfig1 libdbus-1-3)"; fi; \
	fi

demo: $(STAMP)
	@test -f $(DEMO)/.complete || $(PY) -m core synth $(DEMO) --tiles 16 --size 160 --seed 7 --empty-fraction 0.1

run: demo
	QT_QPA_PLATFORM= $(PY) -m app --demo --data $(DEMO)

# tests/core runs with PySide6 and pyqtgraph blocked (core must stay headless).
test: $(STAMP)
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q -p no:pytest-qt -W ignore::pytest.PytestConfigWarning -p tests.block_gui tests/core
	$(PY) -m pytest -q tests --ignore=tests/core

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

installer: $(STAMP)
	$(PY) -m pip install --quiet -e '.[installer]'
	bash installer/build.sh

clean:
	rm -rf build dist .pytest_cache $(DEMO)
