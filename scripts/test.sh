#!/usr/bin/env bash
# Runs the whole test suite. Sets up what the tests need first:
# a Python virtualenv with pyarrow and DuckDB (independent Parquet readers) and
# the OpenTelemetry Python SDK with its OTLP exporters (an independent client).
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

cargo test --workspace "$@"
