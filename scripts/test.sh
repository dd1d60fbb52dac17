#!/usr/bin/env bash
# Runs the whole test suite. Sets up what the tests need first:
# a Python virtualenv with pyarrow and DuckDB (independent Parquet readers) and
# the OpenTelemetry Python SDK with its OTLP exporters (an independent client),
# moto's S3-compatible server (the object-storage tests),
# Chromium for the dashboard tests, Alertmanager for the notification tests
# PostgreSQL for the shared state database, Prometheus (the PromQL oracle) (each test runs a throwaway
# server in a temporary directory; nothing is started as a service).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${BURNWATCH_VENV:-$HOME/.cache/burnwatch/venv}"
if ! "$VENV/bin/python" -c "import pyarrow, duckdb, moto.server, opentelemetry.sdk, opentelemetry.exporter.otlp.proto.grpc, opentelemetry.exporter.otlp.proto.http" 2>/dev/null; then
  echo "setting up $VENV (pyarrow, duckdb, moto, opentelemetry-sdk) ..."
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "pyarrow>=15" "duckdb>=1.1,<3" "moto[server]>=5.1,<6" \
    "opentelemetry-sdk>=1.30" "opentelemetry-exporter-otlp-proto-http>=1.30" "opentelemetry-exporter-otlp-proto-grpc>=1.30"
fi
export BURNWATCH_PYTHON="$VENV/bin/python"

# The dashboard tests drive a real headless Chromium (directly and through
# chromedriver); the notification tests
# push alerts to a real Alertmanager (Debian's prometheus-alertmanager).
missing=()
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  missing+=(chromium)
fi
if ! command -v chromedriver >/dev/null 2>&1; then
  missing+=(chromium-driver)
fi
if [ -z "${BURNWATCH_ALERTMANAGER:-}" ] && ! command -v prometheus-alertmanager >/dev/null 2>&1 \
  && ! command -v alertmanager >/dev/null 2>&1; then
  missing+=(prometheus-alertmanager)
fi
# scripts/cluster.sh (tests/cluster_topology.rs) uses curl and setpriv.
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v setpriv >/dev/null 2>&1 || missing+=(util-linux)
# The PromQL oracle (tests/promql_oracle.rs) compares against a real
# Prometheus 2.42 (Debian's prometheus, which brings promtool).
if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
  missing+=(prometheus)
fi
if [ -z "${BURNWATCH_PG_BIN:-}" ] && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  missing+=(postgresql)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${missing[*]} ..."
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "the tests need: ${missing[*]} (Debian: sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
fi

cargo test --workspace "$@"
