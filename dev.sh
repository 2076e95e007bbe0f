#!/usr/bin/env bash
# One entry point for a fresh clone:
#   ./dev.sh demo   set up .venv, train a small model, export it, show what was written
#   ./dev.sh test   set up .venv and run the whole test suite (two workers); with no
#                   arguments it first runs the core export tests (tests/core) on the
#                   lowest supported TensorFlow too; with arguments, pytest takes them
#   ./dev.sh bench  set up .venv and run the benchmark (bench/run.py; --quick for a smoke run)
set -euo pipefail
cd "$(dirname "$0")"
VENV="${VENV:-.venv}"
PY="${PYTHON:-python3}"

setup() {
  if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
  fi
  # Reinstall only when pyproject.toml or this script changed since the last install.
  stamp="$VENV/.installed-$(cat pyproject.toml dev.sh | sha256sum | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -e '.[test]'
    # TF Serving's config protos for tests/registry/test_serving_config.py. --no-deps: the wheel
    # requires the full `tensorflow`, which would install over tensorflow-cpu; the
    # grpcio and protobuf it needs come with TensorFlow already.
    "$VENV/bin/python" -m pip install -q --no-deps 'tensorflow-serving-api==2.21.*'
    rm -f "$VENV"/.installed-* && touch "$stamp"
  fi
}

# The lowest TensorFlow the package supports (pyproject.toml, export_core/tf_private.py):
# a second, small environment with only what the core export needs, checked out-of-tree
# (PYTHONPATH) against the same tests. Prefect, the storage servers and tf2onnx stay in
# .venv; the core tests need none of them.
LOWEST_TF="tensorflow-cpu==2.19.*"
LOWEST_VENV="${LOWEST_VENV:-.venv-tf-lowest}"
CORE_TESTS="tests/core"

setup_lowest() {
  if [ ! -x "$LOWEST_VENV/bin/python" ]; then
    "$PY" -m venv "$LOWEST_VENV"
  fi
  # One resolve for TensorFlow and the rest, so pip keeps TF 2.19's numpy<2.2 and protobuf<6.
  set -- "$LOWEST_TF" 'keras>=3.15,<4' 'numpy>=1.26' 'fsspec>=2026.9' 's3fs>=2026.9' \
    'gcsfs>=2026.9' 'cryptography>=42' 'pytest>=8' 'pytest-timeout>=2.3' 'pytest-xdist>=3.6'
  stamp="$LOWEST_VENV/.installed-$(echo "$*" | sha256sum | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    "$LOWEST_VENV/bin/python" -m pip install -q "$@"
    rm -f "$LOWEST_VENV"/.installed-* && touch "$stamp"
  fi
}

test_lowest() {
  setup_lowest
  echo "== core export tests on $("$LOWEST_VENV/bin/python" -c 'import tensorflow as tf; print("TensorFlow", tf.__version__)' 2>/dev/null)"
  # shellcheck disable=SC2086
  PYTHONPATH="$PWD" "$LOWEST_VENV/bin/python" -m pytest -q -p no:cacheprovider -n 2 --dist loadfile $CORE_TESTS
}

export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
export PREFECT_SERVER_ANALYTICS_ENABLED=false
case "${1:-}" in
  demo) setup; shift; exec "$VENV/bin/python" examples/quickstart.py "$@" ;;
  test)
    setup; shift
    if [ $# -eq 0 ]; then
      test_lowest
      # Two workers, each taking whole files (a module's Prefect API and servers start
      # once): the suite's own time on 2 cores, not its sum.
      set -- -n 2 --dist loadfile
    fi
    exec "$VENV/bin/python" -m pytest "$@" ;;
  bench) setup; shift; exec "$VENV/bin/python" bench/run.py "$@" ;;
  *) echo "usage: $0 demo|test|bench [args]" >&2; exit 2 ;;
esac
