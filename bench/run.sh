#!/usr/bin/env bash
# Runs every benchmark on this machine and prints the figures bench/RESULTS.md records:
#   parse  - fetch-and-parse of the 36-paper trending page from a loopback server (criterion)
#   render - one digest assembled, and built into a message (criterion)
#   send   - run-once to Postfix's smtp-sink for 10,000 and 100,000 subscribers, next to
#            smtp-source's rate with the same size and concurrency (the ceiling)
#   state  - the data directory after a simulated year of daily editions, per subscriber
# Installs smtp-sink/smtp-source (postfix) and /usr/bin/time when missing (root or sudo),
# through scripts/install-test-deps.
# BENCH_SUBSCRIBERS, BENCH_CONCURRENCY, BENCH_STATE_SUBSCRIBERS, BENCH_STATE_DAYS change
# the sizes; BENCH_STORE_ENGINES (send: "sled sqlite") and BENCH_STORE_ENGINE (state: sled)
# the store engines; `bench/run.sh send` (or parse, render, state) runs one part.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-deps

parts=("${@:-parse render send state}")
# shellcheck disable=SC2068
set -- ${parts[@]}

echo "## machine"
echo "- $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "- $(free -g | awk '/^Mem:/ {print $2}') GB RAM, $(uname -sr), $(rustc --version)"
echo "- $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"

for part in "$@"; do
    case "$part" in
    parse | render)
        echo "## $part"
        cargo bench --quiet --bench "$part" 2>/dev/null | grep -E '^[a-z_0-9]+/|time:'
        ;;
    send)
        echo "## send rate"
        cargo bench --quiet --features e2e --bench send_rate
        ;;
    state)
        echo "## state growth"
        cargo bench --quiet --bench state_growth
        ;;
    *)
        echo "unknown part '$part' (parse, render, send, state)" >&2
        exit 2
        ;;
    esac
done
