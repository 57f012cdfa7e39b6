#!/usr/bin/env bash
# Starts a Keel cluster as Flink's bin/start-cluster.sh does: a dispatcher for each line of
# conf/masters (host:rest-port) and a worker for each line of conf/workers (host). Local hosts
# are started directly, other hosts over ssh (the same directory layout on every host, as with
# Flink). Several masters need high-availability.type: zookeeper in conf/config.yaml.
#   bin/start-cluster.sh          # then: bin/keel status, bin/stop-cluster.sh
# KEEL_CONF_DIR, KEEL_LOG_DIR, KEEL_PID_DIR, KEEL_BIN: see bin/keel-daemon.sh.
set -euo pipefail
home="$(cd "$(dirname "$0")/.." && pwd)"
conf_dir="${KEEL_CONF_DIR:-$home/conf}"
. "$home/bin/cluster-hosts.sh"

# Both files are read (and checked) before anything starts.
masters=$(read_masters "$conf_dir/masters") || exit 1
workers=$(read_workers "$conf_dir/workers") || exit 1
[ -n "$masters" ] || { echo "$conf_dir/masters lists no dispatcher" >&2; exit 1; }

failed=0
while read -r host port; do
    run_on "$host" dispatcher start -D "rest.address=$host" -D "rest.port=$port" || failed=1
done <<<"$masters"
if [ -n "$workers" ]; then
    while read -r host; do
        run_on "$host" worker start || failed=1
    done <<<"$workers"
fi
exit $failed
