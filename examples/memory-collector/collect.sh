#!/bin/sh
# An example maomao collector, written the way MAO-MAO tools were: it
# writes into /usr/src/app/data (the tool's git data repository, mounted
# there by maomao) and knows nothing else about the framework.
#
# Each run measures one number (the memory this machine has available, in
# KiB) and writes it to the next control-<n>.csv, the series maomao's
# spike detection reads; it also appends a row to measurements.csv (a time
# column and a value column) for tools that declare --metric.
set -eu

data=${DATA_DIR:-/usr/src/app/data}
mkdir -p "$data"

value=
while read -r key amount _unit; do
    if [ "$key" = "MemAvailable:" ]; then
        value=$amount
        break
    fi
done < /proc/meminfo
if [ -z "$value" ]; then
    echo "no MemAvailable in /proc/meminfo" >&2
    exit 1
fi

n=0
while [ -e "$data/control-$n.csv" ]; do
    n=$((n + 1))
done
echo "$value" > "$data/control-$n.csv"

if [ ! -e "$data/measurements.csv" ]; then
    echo "time,mem_available_kib" > "$data/measurements.csv"
fi
echo "$(date -u +%Y-%m-%dT%H:%M:%SZ),$value" >> "$data/measurements.csv"

# maomao keeps this output in the run's log (maomao ctl tool logs NAME)
echo "run ${MAOMAO_RUN_ID:-manual} on ${MAOMAO_MEMBER:-?}: control-$n.csv = $value KiB available"
