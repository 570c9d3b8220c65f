#!/usr/bin/env bash
# The whole check, from nothing but Python 3.11 and pip: locked environments for Airflow 3.3
# and 2.11, ruff, mypy, the docs site (docs/, Sphinx with -W), the test suite on both lines, then the release check (scripts/check_wheel.sh:
# the built sdist and wheel, the wheel installed in clean virtualenvs for 3.3, 2.11 and the lower
# bounds), then, with DINTERO_SYSTEM_PRODUCTION=1, the system suite's production profile
# (scripts/system_production.sh: PostgreSQL, Redis, Celery, two of each process, Dintero through a
# proxy, the built wheel). Extra arguments
# go to pytest. Any failure fails the script.
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
# The production profile is not part of the default run yet: in the last full run its settlements
# example ended failed once after passing in the profile's own runs (issue 24 stays open until it
# is understood). DINTERO_SYSTEM_PRODUCTION=1 runs it here; scripts/system_production.sh alone too.
if [ "${DINTERO_SYSTEM_PRODUCTION:-0}" = 1 ]; then
  echo "== the system suite's production profile (scripts/system_production.sh)"
  bash scripts/system_production.sh || status=$?
fi
exit $status
