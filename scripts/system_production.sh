#!/usr/bin/env bash
# The system suite's production profile (tests/system, DINTERO_SYSTEM_PROFILE=production):
# PostgreSQL (a throwaway cluster), Redis, CeleryExecutor with two workers, two triggerers, two
# api-servers, Dintero only through a proxy; the provider installed from the built wheel (not
# editable) into its own locked virtualenv, .venv-prod. Needs redis-server, initdb and pg_ctl on
# PATH (.ci/run installs redis-server when missing). Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
cd "$REPO"
ensure_uv
venv="$REPO/.venv-prod"
lock="$REPO/requirements/dev-airflow-3.3.txt"
want="$(sha256sum < "$lock" | cut -c1-16)"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.lock-sha" 2>/dev/null)" != "$want" ]; then
  echo "Creating $venv from $lock" >&2
  rm -rf "$venv"
  uv venv --quiet --python 3.11 "$venv" >&2
  VIRTUAL_ENV="$venv" uv pip install --quiet -r "$lock" >&2
  echo "$want" > "$venv/.lock-sha"
fi
dist="$(mktemp -d)"
trap 'rm -rf "$dist"' EXIT
uv build --quiet --wheel --out-dir "$dist" "$REPO" >&2
VIRTUAL_ENV="$venv" uv pip install --quiet --no-deps --reinstall "$dist"/*.whl >&2
start=$(date +%s)
status=0
DINTERO_SYSTEM_PROFILE=production "$venv/bin/python" -m pytest -q --timeout=900 tests/system "$@" || status=$?
echo "== production profile: $(( $(date +%s) - start )) s (exit $status)"
exit $status
