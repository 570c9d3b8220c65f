#!/usr/bin/env bash
# The whole check, from nothing but Python 3.11 and pip: locked environments for Airflow 3.3 and
# 2.11, ruff, mypy, the docs site (docs/, Sphinx with -W), the test suite on both lines, the release
# check (scripts/check_wheel.sh: the built sdist and wheel, installed in clean virtualenvs for every
# declared Airflow line and the lower bounds), then the system suite's production profile
# (scripts/system_production.sh: PostgreSQL, Redis, Celery, two of each process, Dintero through a
# proxy, the built wheel). Extra arguments go to pytest. Any failure fails the script.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
cd "$REPO"
status=0
for line in 3.3 2.11; do
  venv="$(make_env "$line")"
  if [ "$line" = "3.3" ]; then
    echo "== ruff and mypy"
    "$venv/bin/ruff" check airflow_provider_dintero tests example_dags bench scripts
    "$venv/bin/ruff" format --check airflow_provider_dintero tests example_dags bench scripts
    "$venv/bin/mypy" airflow_provider_dintero
    echo "== docs site (sphinx, warnings are errors)"
    rm -rf build/docs/html
    "$venv/bin/sphinx-build" -q -W --keep-going -b html docs build/docs/html || status=1
    export DOCS_BUILD_DIR="$REPO/build/docs/html"
  fi
  echo "== tests on Airflow $line"
  "$venv/bin/python" -m pytest -q "$@" || status=$?
done
echo "== the built wheel (scripts/check_wheel.sh)"
bash scripts/check_wheel.sh || status=$?
# The production profile (PostgreSQL, Redis, Celery, two of each process, Dintero through a proxy,
# the built wheel). DINTERO_SYSTEM_PRODUCTION=0 leaves it out (a quick local run).
if [ "${DINTERO_SYSTEM_PRODUCTION:-1}" = 1 ]; then
  echo "== the system suite's production profile (scripts/system_production.sh)"
  bash scripts/system_production.sh || status=$?
fi
exit $status
