#!/bin/sh
# Prints the median (ns) criterion estimated for every benchmark of the last
# run, one "id median-ns" line each: `sh benches/criterion-medians.sh`.
# Needs jq. Criterion stores each id under target/criterion/<id>/new/ (a '/'
# inside a function name becomes '_').
set -eu
root="${CARGO_TARGET_DIR:-$(dirname "$0")/../target}/criterion"
find "$root" -path '*/new/estimates.json' | sort -V | while read -r f; do
    id="${f#"$root"/}"
    id="${id%/new/estimates.json}"
    printf '%s %.1f\n' "$id" "$(jq '.median.point_estimate' "$f")"
done
