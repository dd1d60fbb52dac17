#!/usr/bin/env bash
# Runs the whole test suite. Sets up what the tests need first:
# a Python virtualenv with pyarrow and DuckDB (independent Parquet readers) and
# the OpenTelemetry Python SDK with its OTLP exporters (an independent client),
# and Chromium for the dashboard tests.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${BURNWATCH_VENV:-$HOME/.cache/burnwatch/venv}"
if ! "$VENV/bin/python" -c "import pyarrow, duckdb, opentelemetry.sdk, opentelemetry.exporter.otlp.proto.grpc, opentelemetry.exporter.otlp.proto.http" 2>/dev/null; then
  echo "setting up $VENV (pyarrow, duckdb, opentelemetry-sdk) ..."
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "pyarrow>=15" "duckdb>=1.1,<3" \
    "opentelemetry-sdk>=1.30" "opentelemetry-exporter-otlp-proto-http>=1.30" "opentelemetry-exporter-otlp-proto-grpc>=1.30"
fi
export BURNWATCH_PYTHON="$VENV/bin/python"

# The dashboard tests drive a real headless Chromium.
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing chromium ..."
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "the dashboard tests need Chromium: install it (Debian: sudo apt-get install chromium)" >&2
    exit 1
  fi
fi

cargo test --workspace "$@"
