#!/usr/bin/env bash
# Run every benchmark in sequence against the loopback reference server; print their figures.
#
#   bash benchmarks/run_all.sh                 # with `python` from PATH
#   PYTHON=.venv/bin/python bash benchmarks/run_all.sh
#
# Extra arguments are not forwarded; run a script on its own (see --help) to change its options.
# Exit status: the number of benchmarks that failed (0 when all ran).
set -u
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
export PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}"

failed=0
for bench in bench_overhead bench_concurrency bench_cache bench_load bench_tail bench_resume bench_startup \
    bench_batch_cost bench_report bench_themes bench_review grounding_rule; do
    script="benchmarks/$bench.py"
    if [ ! -f "$script" ]; then
        echo "== $bench: not present, skipped"
        echo
        continue
    fi
    echo "######## $script"
    start=$(date +%s)
    if ! "$PY" "$script"; then
        echo "!! $script failed"
        failed=$((failed + 1))
    fi
    echo "######## $script took $(( $(date +%s) - start )) s"
    echo
done
exit "$failed"
