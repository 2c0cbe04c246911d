#!/usr/bin/env bash
# Set up datapruner in .venv on a fresh machine: torch from the pinned wheels, then the package with
# every extra the tests use (faiss-cpu, ray, airflow). Safe to rerun: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
.venv/bin/python -m pip install -q -e ".[cpu,dev,ray,airflow]"
# Chromium for the report's headless-browser test (tests/report), when missing and run as root (else it is skipped)
[ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null || command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium; } || echo "chromium was not installed: the report's browser test will be skipped"
echo "datapruner is installed in .venv: .venv/bin/datapruner --help"
