#!/usr/bin/env bash
# Retake the UI screenshots in docs/images/ (asset_graph.png, comparison_asset.png): runs the browser test of
# ftassets_tests/test_ui.py, which saves its screenshots in its temporary folder and, with
# FTASSETS_REFRESH_DOCS_IMAGES=1, copies them into docs/images/ once it has passed. Needs chromium and
# chromedriver (scripts/install_test_tools.sh); takes a few minutes (the test's backfill trains a tiny model).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}
FTASSETS_REFRESH_DOCS_IMAGES=1 "$PYTHON" -m pytest -q -n 0 -p no:cacheprovider \
  ftassets_tests/test_ui.py -k test_the_browser_shows_the_asset_graph "$@"
git status --short docs/images
