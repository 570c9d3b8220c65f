#!/usr/bin/env bash
# The demo, from nothing but Python 3.11 and pip: builds the Airflow 3.3 environment, starts the
# Dintero emulator and moto's S3 server on 127.0.0.1, runs every DAG in example_dags/ with
# `airflow dags test`, prints what was provisioned and what landed in S3, and stops what it started.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
venv="$(make_env "${DEMO_AIRFLOW:-3.3}")"
exec "$venv/bin/python" "$REPO/scripts/demo.py"
