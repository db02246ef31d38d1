#!/usr/bin/env bash
# Merge the shards of every runner into one report (by evidence: verified over emulated over predicted, then the
# newest), render report.md and report.html into the site folder, and put the table on the job summary.
# In:  SHARDS_DIR (default shards: one folder per runner, each with its report.json), SITE_DIR (default site).
set -euo pipefail
shards_dir="${SHARDS_DIR:-shards}"; site="${SITE_DIR:-site}"
mapfile -t shards < <(find "$shards_dir" -name report.json -type f | sort)
if [ "${#shards[@]}" -eq 0 ]; then
  echo "::error::no report.json under $shards_dir: no runner reported"
  exit 1
fi
echo "merging ${#shards[@]} shard(s): ${shards[*]}"
mkdir -p "$site"
qcompat merge "${shards[@]}" -o "$site/compatibility.json" --reclassify
qcompat render "$site/compatibility.json"
cp "$site/compatibility.html" "$site/index.html"
if [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then cat "$site/compatibility.md" >> "$GITHUB_STEP_SUMMARY"; fi
