# Shared by scripts/test.sh and scripts/demo.sh: create (or reuse) a locked virtualenv for one
# Airflow line and install this package into it. Usage: make_env 3.3 -> prints the venv path.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export UV_COMPILE_BYTECODE=1   # this machine sets PYTHONDONTWRITEBYTECODE; without bytecode every import airflow costs 2 s more

ensure_uv() {
  if ! command -v uv >/dev/null 2>&1; then
    python3 -m pip install --quiet --disable-pip-version-check uv >&2
  fi
}

make_env() {
  local line="$1" venv="$REPO/.venv-af${1%%.*}"
  local lock="$REPO/requirements/dev-airflow-$line.txt"
  local stamp="$venv/.lock-sha"
  local want
  want="$(sha256sum < "$lock" | cut -c1-16)"
  ensure_uv
  if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "Creating $venv for Airflow $line from $lock" >&2
    rm -rf "$venv"
    uv venv --quiet --python 3.11 "$venv" >&2
    VIRTUAL_ENV="$venv" uv pip install --quiet -r "$lock" >&2
    echo "$want" > "$stamp"
  fi
  VIRTUAL_ENV="$venv" uv pip install --quiet --no-deps -e "$REPO" >&2
  echo "$venv"
}
