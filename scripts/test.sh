#!/usr/bin/env bash
# The whole test suite, as CI runs it: formatting, lints, the engine's purity rule, and every
# test in the workspace (unit, golden scenarios, property tests, fuzz-corpus replay, schema
# validation, end-to-end replay of the sample files, and the Kafka tests over the embedded
# mock cluster and over a tansu broker this script starts, installing it when missing).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "rustfmt"
cargo fmt --all -- --check

step "clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "engine purity: vigil-engine must not depend on tokio, rdkafka or any async runtime"
deps=$(cargo tree -p vigil-engine -e normal --prefix none --locked | awk '{print $1}' | sort -u)
for banned in tokio rdkafka rdkafka-sys futures async-std mio; do
  if grep -qx "$banned" <<<"$deps"; then
    echo "vigil-engine depends on $banned; the engine must stay pure" >&2
    exit 1
  fi
done
echo "ok: $(wc -l <<<"$deps") crates, none of them I/O runtimes"

step "Kafka test broker (tansu on a free loopback port)"
if [ -z "${VIGIL_TEST_BOOTSTRAP:-}" ]; then
  tansu_dir=$(mktemp -d)
  trap 'scripts/tansu.sh stop "$tansu_dir"' EXIT
  eval "$(scripts/tansu.sh start "$tansu_dir")"
  export VIGIL_TEST_BOOTSTRAP
fi
echo "VIGIL_TEST_BOOTSTRAP=$VIGIL_TEST_BOOTSTRAP"

step "tests"
cargo test --workspace --locked
