#!/usr/bin/env bash
# The release check: build the sdist and the wheel from the checkout's files, `twine check` them,
# check their contents (scripts/check_wheel.py dist), then install the one wheel (not editable)
# into a clean virtualenv per environment and check it there (scripts/check_wheel.py installed):
#   af3  Airflow 3.3  wheel[amazon,google,azure,openlineage,testing], constrained by requirements/dev-airflow-3.3.txt
#   af2  Airflow 2.11 wheel[amazon,google,azure,openlineage,testing], constrained by requirements/dev-airflow-2.11.txt
#   af30 af31 af32  Airflow 3.0, 3.1, 3.2: the same, constrained by requirements/dev-airflow-3.x.txt
#        (locked as of one month after the line's last release; the lines CI runs no test suite on),
#        the light check (no `airflow providers list` CLI), then the settlements example run with
#        `airflow dags test` (scripts/demo.py; DEMO_DAGS= runs every example)
#   py312  Airflow 3.3 on Python 3.12 (the other environments run Python 3.11), the light check:
#        the machine's own CPython 3.12 (uv finds it, or pyenv's); uv cannot download one here
#   min  the lower bounds: requirements/min-airflow-2.11.txt (the package's own dependencies,
#        extras included, resolved with --resolution lowest-direct), then the wheel with --no-deps;
#        every declared requirement must be installed at exactly its lower bound
# Only the wheel's declared dependencies are installed (the dev locks act as constraints), so an
# undeclared import cannot hide behind a test dependency.
# Usage: bash scripts/check_wheel.sh [af3 af2 min af30 af31 af32 py312]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
# No bytecode for these one-shot venvs: compiling costs more (~25 s per venv here) than the
# slower imports of the few processes that run in them.
export UV_COMPILE_BYTECODE=0
cd "$REPO"
ensure_uv
envs=("$@")
[ ${#envs[@]} -gt 0 ] || envs=(af3 af2 min af30 af31 af32 py312)
work="$REPO/.wheel-check"
DEMO_DAGS="${DEMO_DAGS-dintero_settlements_to_s3}"
rm -rf "$work"
mkdir -p "$work/src" "$work/dist"
unset PYTHONPATH

echo "== wheel: build the sdist and the wheel (the wheel is built from the sdist)"
# Build from a copy of exactly the files git knows (tracked, or new and not ignored), so that a
# stale egg-info or build/ directory in the checkout cannot put a file into the distributions.
git ls-files -z --cached --others --exclude-standard \
  | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
  | xargs -0 cp --parents -t "$work/src"
uv build --quiet --out-dir "$work/dist" "$work/src"
wheel="$(ls "$work"/dist/*.whl)"

echo "== wheel: twine check and contents"
twine="$REPO/.venv-af3/bin/twine"
[ -x "$twine" ] || twine="$(make_env 3.3)/bin/twine"
"$twine" check --strict "$work"/dist/*
status=0
python3 scripts/check_wheel.py dist "$work/dist" || status=1
for name in "${envs[@]}"; do
  venv="$work/venv-$name"
  echo "== wheel: clean virtualenv $name"
  t0=$SECONDS
  python=3.11
  if [ "$name" = py312 ]; then
    python="$(uv python find --no-python-downloads 3.12 2>/dev/null || ls /root/.pyenv/versions/3.12*/bin/python3.12 2>/dev/null | head -1)"
    [ -n "$python" ] || { echo "check_wheel: no CPython 3.12 on this machine (pyproject declares it)" >&2; status=1; continue; }
  fi
  uv venv --quiet --python "$python" "$venv"
  extra=()
  case "$name" in
    af3|py312) VIRTUAL_ENV="$venv" uv pip install --quiet "airflow-provider-dintero[amazon,google,azure,openlineage,testing] @ $wheel" \
           -c requirements/dev-airflow-3.3.txt ;;
    af2) VIRTUAL_ENV="$venv" uv pip install --quiet "airflow-provider-dintero[amazon,google,azure,openlineage,testing] @ $wheel" \
           -c requirements/dev-airflow-2.11.txt ;;
    af30|af31|af32)
         # 3.0 and 3.1 build a hook's form fields only when wtforms imports: with the FAB provider,
         # as deployments that show provider fields have it (it is in their locks)
         fab=(); [ "$name" = af32 ] || fab=(apache-airflow-providers-fab)
         VIRTUAL_ENV="$venv" uv pip install --quiet "airflow-provider-dintero[amazon,google,azure,openlineage,testing] @ $wheel" \
           "${fab[@]}" -c "requirements/dev-airflow-3.${name#af3}.txt" ;;
    min) VIRTUAL_ENV="$venv" uv pip install --quiet -r requirements/min-airflow-2.11.txt
         VIRTUAL_ENV="$venv" uv pip install --quiet --no-deps "$wheel"
         extra=(--at-lower-bounds) ;;
    *) echo "unknown environment $name (af3, af2, min, af30, af31, af32, py312)" >&2; exit 2 ;;
  esac
  echo "   installed in $((SECONDS - t0)) s"
  case "$name" in af30|af31|af32|py312) extra=(--light) ;; esac
  (cd "$work" && "$venv/bin/python" "$REPO/scripts/check_wheel.py" installed --example-dags "$REPO/example_dags" "${extra[@]}") \
    || status=1
  echo "   checked in $((SECONDS - t0)) s"
  case "$name" in
    af30|af31|af32)
      # the settlements example run with `airflow dags test` against the emulator and moto (the
      # demo's way): the partner-wide sensor (its trigger run inline), the mapped copies into S3
      # and the asset events, which 3.0's dags test needs registered (the other examples: about
      # 2 more minutes per line, DEMO_DAGS= runs them all); moto (a test tool) only now, after
      # the import checks
      VIRTUAL_ENV="$venv" uv pip install --quiet "moto[server,s3]" -c "requirements/dev-airflow-3.${name#af3}.txt"
      (cd "$work" && DINTERO_DEMO_DAGS="$DEMO_DAGS" "$venv/bin/python" "$REPO/scripts/demo.py" > "$work/demo-$name.log" 2>&1) \
        && echo "   example DAGs run (demo: ${DEMO_DAGS:-all}): ok" \
        || { status=1; echo "check_wheel: the example DAGs failed on $name:"; grep "^demo:" "$work/demo-$name.log"; }
      echo "   example DAGs run in $((SECONDS - t0)) s"
      ;;
  esac
done
echo "== wheel: $([ "$status" = 0 ] && echo ok || echo FAILED) in ${SECONDS} s"
[ "$status" = 0 ] && rm -rf "$work"
exit $status
