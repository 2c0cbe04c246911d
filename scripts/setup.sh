#!/usr/bin/env bash
# Set up datapruner in .venv on a fresh machine: torch from the pinned wheels, then the package with
# every extra the tests use (faiss-cpu, ray, airflow, wids, megatron-energon). As root with apt-get, also Chromium for the
# report's headless-browser test (DATAPRUNER_NO_CHROMIUM=1: not). Safe to rerun: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
echo "setup: .venv with torch 2.14.1, torchvision 0.29.1 and datapruner[cpu,dev,ray,airflow,indexes,energon] (editable)"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
.venv/bin/python -m pip install -q -e ".[cpu,dev,ray,airflow,indexes,energon]"

chromium_wanted() {
  [ "${DATAPRUNER_NO_CHROMIUM:-0}" != 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null \
    && ! command -v chromium >/dev/null
}
if chromium_wanted; then
  echo "setup: apt-get install chromium (as root), for the report's headless-browser test only" \
       "(tests/report/test_browser.py; DATAPRUNER_NO_CHROMIUM=1 skips this)"
  { apt-get update -qq && apt-get install -y -qq chromium; } \
    || echo "setup: chromium was not installed: the report's browser test will be skipped"
elif ! command -v chromium >/dev/null; then
  echo "setup: no Chromium (not root, no apt-get, or DATAPRUNER_NO_CHROMIUM=1): the report's browser test will be skipped"
fi
echo "datapruner is installed in .venv: .venv/bin/datapruner --help"
