#!/usr/bin/env bash
# Run a benchmark command and keep its raw output with the facts needed to read it.
#
#   benchmarks/record.sh docs/results/NAME.txt "what this measures" CMD [ARGS...]
#
# Writes a header (date, machine, load average, code, versions, command), then the command's
# stdout and stderr exactly as printed, then the load average and wall time at the end.
# Every CPU figure quoted in docs/ comes from a file written this way (docs/results/README.md).
set -u
out=$1; what=$2; shift 2
py=${PYTHON:-.venv/bin/python}
{
  echo "# $what"
  echo "# Between the raw-output markers: the command's stdout and stderr as printed; lines starting with '#' outside them were written by benchmarks/record.sh."
  echo "# date (UTC, start): $(date -u '+%Y-%m-%d %H:%M:%S')"
  echo "# machine: $(uname -n | cut -c1-12), nproc $(nproc), $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1), $(free -g | awk '/Mem:/{print $2}') GiB RAM"
  echo "# load average at start (1/5/15 min): $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# code: $(git rev-parse HEAD); git status --short at start: $(git status --short | tr '\n' ';')"
  echo "# $($py -c 'import sys; print("python", sys.version.split()[0])'), $($py -c 'import importlib.metadata as m; print("TF", m.version("tensorflow"), "/ Keras", m.version("keras"))' 2>/dev/null)"
  echo "# command: $*"
  echo "# --- raw output (stdout and stderr) follows ---"
} > "$out"
t0=$(date +%s)
"$@" >> "$out" 2>&1
rc=$?
{
  echo "# --- end of raw output ---"
  echo "# exit status: $rc; wall time: $(( $(date +%s) - t0 )) s; load average at end (1/5/15 min): $(cut -d' ' -f1-3 /proc/loadavg)"
} >> "$out"
exit $rc
