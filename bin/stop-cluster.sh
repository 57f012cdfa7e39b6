#!/usr/bin/env bash
# Stops what bin/start-cluster.sh started: every worker of conf/workers, then every dispatcher
# of conf/masters (SIGTERM: a worker deregisters, a leader resigns; SIGKILL after
# KEEL_STOP_TIMEOUT seconds).
set -euo pipefail
home="$(cd "$(dirname "$0")/.." && pwd)"
conf_dir="${KEEL_CONF_DIR:-$home/conf}"
. "$home/bin/cluster-hosts.sh"

masters=$(read_masters "$conf_dir/masters") || exit 1
workers=$(read_workers "$conf_dir/workers") || exit 1

failed=0
for host in $(echo "$workers" | sort -u); do
    run_on "$host" worker stop-all || failed=1
done
for host in $(echo "$masters" | cut -d' ' -f1 | sort -u); do
    run_on "$host" dispatcher stop-all || failed=1
done
exit $failed
