#!/usr/bin/env bash
# Compare the merged report with the baseline (the last published compatibility.json) and decide the gate.
# The baseline must be fetched: a gate that cannot see its baseline fails loudly instead of passing silently
# (ALLOW_MISSING_BASELINE=true only for the very first publication).
# In:  BASELINE_URL (http(s)://, file:// or a path; empty: no gate, said on the summary), NEW (default
#      site/compatibility.json), FAIL_ON (space-separated metric gates, e.g. "tokens_per_s:10% ttft_s:25%"),
#      ALLOW_LOST (true: list lost coverage without failing on it), GATE_EVENTS (events whose regressions fail the
#      job; default pull_request: on a push the new table is the truth and regressions are a warning),
#      GITHUB_EVENT_NAME. Out: result=pass|fail|none and diff=<file> on $GITHUB_OUTPUT; diff.md beside NEW.
set -uo pipefail
new="${NEW:-site/compatibility.json}"
out="${GITHUB_OUTPUT:-/dev/null}"
summary="${GITHUB_STEP_SUMMARY:-/dev/null}"
diff_md="$(dirname "$new")/diff.md"
if [ -z "${BASELINE_URL:-}" ]; then
  echo "No baseline-url given: no regression gate." | tee -a "$summary"
  echo "result=none" >> "$out"
  exit 0
fi
baseline="$(mktemp -d)/baseline.json"
case "$BASELINE_URL" in
  http://*|https://*|file://*) curl -fsSL --retry 3 --retry-delay 5 "$BASELINE_URL" -o "$baseline" ;;
  *) cp "$BASELINE_URL" "$baseline" ;;
esac
fetched=$?
if [ "$fetched" -ne 0 ] || ! "${QCOMPAT_PYTHON:-python3}" -c "import json,sys; d=json.load(open(sys.argv[1])); assert d.get('schema','').startswith('qcompat/')" "$baseline" 2>/dev/null; then
  if [ "${ALLOW_MISSING_BASELINE:-false}" = "true" ]; then
    echo "::notice::no baseline at $BASELINE_URL (allowed: first publication); no regression gate this time"
    echo "result=none" >> "$out"
    exit 0
  fi
  echo "::error::cannot fetch the baseline report from $BASELINE_URL (or it is not a qcompat report): the regression gate cannot run. Fix the URL, or set allow-missing-baseline for the first publication."
  exit 1
fi
args=()
for gate in ${FAIL_ON:-}; do args+=(--fail-on "$gate"); done
[ "${ALLOW_LOST:-false}" = "true" ] && args+=(--allow-lost)
qcompat diff "$baseline" "$new" --markdown "$diff_md" "${args[@]}"
rc=$?
echo "diff=$diff_md" >> "$out"
{ echo; echo "## Changes since the baseline"; cat "$diff_md"; } >> "$summary"
case "$rc" in
  0) echo "result=pass" >> "$out" ;;
  1) if [[ " ${GATE_EVENTS:-pull_request} " == *" ${GITHUB_EVENT_NAME:-pull_request} "* ]]; then
       echo "result=fail" >> "$out"
       echo "::error::the new report is worse than the baseline (regressions, lost coverage or metric gates: see the job summary)"
     else
       echo "result=pass" >> "$out"
       echo "::warning::the new report is worse than the baseline (see the job summary); on ${GITHUB_EVENT_NAME:-this event} the new table is published"
     fi ;;
  *) echo "::error::qcompat diff failed (exit $rc)"; exit "$rc" ;;
esac
exit 0
