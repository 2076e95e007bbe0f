#!/usr/bin/env bash
# One entry point for a fresh clone:
#   ./dev.sh demo   set up .venv, train a small model, export it, show what was written
#   ./dev.sh test   set up .venv and run the whole test suite
#   ./dev.sh bench  set up .venv and run the benchmark (bench/run.py; --quick for a smoke run)
set -euo pipefail
cd "$(dirname "$0")"
VENV="${VENV:-.venv}"
PY="${PYTHON:-python3}"

setup() {
  if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
  fi
  # Reinstall only when pyproject.toml changed since the last successful install.
  stamp="$VENV/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -e '.[test]'
    rm -f "$VENV"/.installed-* && touch "$stamp"
  fi
}

export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
export PREFECT_SERVER_ANALYTICS_ENABLED=false
case "${1:-}" in
  demo) setup; shift; exec "$VENV/bin/python" examples/quickstart.py "$@" ;;
  test) setup; shift; exec "$VENV/bin/python" -m pytest "$@" ;;
  bench) setup; shift; exec "$VENV/bin/python" bench/run.py "$@" ;;
  *) echo "usage: $0 demo|test|bench [args]" >&2; exit 2 ;;
esac
