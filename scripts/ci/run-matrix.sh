#!/usr/bin/env bash
# Run a matrix with pytest and keep its report, whatever the cells did.
# pytest exits 1 when a cell failed in a way no engine limit predicted: a finding for the table, not a broken job,
# so 1 is accepted (and counted on the job summary); anything else fails the step loudly: 2 interrupted,
# 3 internal error, 4 usage error (a bad matrix, an interpreter that does not exist), 5 no cells.
# In:  MATRIX, REPORT_DIR (default qcompat-report), PYTEST_ARGS (extra options, e.g. "-n 4 --qcompat-timeout 600"),
#      PYTEST (default: pytest on PATH). Out: exit-code and report on $GITHUB_OUTPUT; a line on $GITHUB_STEP_SUMMARY.
set -uo pipefail
: "${MATRIX:?MATRIX: the matrix file to run}"
report_dir="${REPORT_DIR:-qcompat-report}"
# shellcheck disable=SC2086  # PYTEST_ARGS is a list of options
"${PYTEST:-pytest}" --qcompat-matrix "$MATRIX" --qcompat-report "$report_dir" -p no:cacheprovider ${PYTEST_ARGS:-}
rc=$?
out="${GITHUB_OUTPUT:-/dev/null}"
echo "exit-code=$rc" >> "$out"
echo "report=$report_dir/report.json" >> "$out"
if [ ! -s "$report_dir/report.json" ]; then
  echo "::error::pytest exited $rc and wrote no $report_dir/report.json"
  exit 1
fi
case "$rc" in
  0) verdict="every cell passed, was skipped with its reason, or failed as its prediction said" ;;
  1) verdict="cells failed (findings for the table; see the report)" ;;
  *) echo "::error::pytest exited $rc (2 interrupted, 3 internal error, 4 usage error, 5 no cells): not a result"
     exit "$rc" ;;
esac
if [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then
  echo "qcompat: \`$MATRIX\` on ${RUNNER_LABEL:-this runner}: pytest exit $rc, $verdict" >> "$GITHUB_STEP_SUMMARY"
fi
exit 0
