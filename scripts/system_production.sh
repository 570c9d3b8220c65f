#!/usr/bin/env bash
# The system suite's production profile (tests/system, DINTERO_SYSTEM_PROFILE=production):
# PostgreSQL (a throwaway cluster), Redis, CeleryExecutor with two workers, two triggerers, two
# api-servers, Dintero only through a proxy; the provider installed from the built wheel (not
# editable) into its own virtualenv, .venv-prod. Needs redis-server, initdb and pg_ctl on PATH
# (.ci/run installs redis-server when missing).
#
# Usage: bash scripts/system_production.sh [--all] [pytest arguments]
#   (default, CI)  4 merchants: the deployment checks, the example DAGs, a worker SIGKILLed
#                  mid-copy (3a) and the proxy check, a few minutes
#   --all          20 merchants, and the token economy, the triggerer take-over (3b), the webhook
#                  twins (3c) and the PostgreSQL outage (3d) too (DINTERO_PRODUCTION_ALL=1; the
#                  cases known to fail are strict xfails), about a quarter of an hour
#
# .venv-prod holds only what the profile runs: the wheel with its amazon extra, the celery
# provider, Redis and PostgreSQL drivers, moto's server, pytest and trustme, each pinned by the
# 3.3 dev lock (-c), not the whole lock (the google/azure providers, mypy, playwright...).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
cd "$REPO"
ensure_uv
if [ "${1:-}" = "--all" ]; then
  shift
  export DINTERO_PRODUCTION_ALL=1
fi
t0=$(date +%s)
venv="$REPO/.venv-prod"
lock="$REPO/requirements/dev-airflow-3.3.txt"
needs=(
  apache-airflow apache-airflow-providers-amazon apache-airflow-providers-standard
  apache-airflow-providers-celery "celery[redis]" psycopg2-binary asyncpg
  "moto[server,s3]" pytest pytest-timeout trustme psutil
)
want="$( (sha256sum < "$lock"; echo "${needs[*]}") | sha256sum | cut -c1-16)"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.lock-sha" 2>/dev/null)" != "$want" ]; then
  echo "Creating $venv (the profile's packages, pinned by $lock)" >&2
  rm -rf "$venv"
  uv venv --quiet --python 3.11 "$venv" >&2
  VIRTUAL_ENV="$venv" uv pip install --quiet "${needs[@]}" -c "$lock" >&2
  echo "$want" > "$venv/.lock-sha"
fi
dist="$(mktemp -d)"
trap 'rm -rf "$dist"' EXIT
uv build --quiet --wheel --out-dir "$dist" "$REPO" >&2
VIRTUAL_ENV="$venv" uv pip install --quiet --no-deps --reinstall "$dist"/*.whl >&2
echo "== production profile: venv and wheel in $(( $(date +%s) - t0 )) s" >&2
start=$(date +%s)
status=0
DINTERO_SYSTEM_PROFILE=production "$venv/bin/python" -m pytest -q --timeout=900 tests/system "$@" || status=$?
echo "== production profile${DINTERO_PRODUCTION_ALL:+ (--all)}: $(( $(date +%s) - start )) s (exit $status)"
exit $status
