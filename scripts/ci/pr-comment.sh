#!/usr/bin/env bash
# Post the diff on the pull request, editing this workflow's earlier comment instead of adding one per push.
# In: DIFF_MD (the diff's Markdown), PR_NUMBER, SITE_ARTIFACT_URL (optional link to the site artifact),
#     GH_TOKEN (github.token; a pull request from a fork gets a read-only token, so the step may not post).
set -euo pipefail
: "${DIFF_MD:?DIFF_MD: the diff to post}" "${PR_NUMBER:?PR_NUMBER: the pull request}"
body="$(mktemp)"
{
  echo "<!-- qcompat-diff -->"
  cat "$DIFF_MD"
  if [ -n "${SITE_ARTIFACT_URL:-}" ]; then echo; echo "Report page: [qcompat-site artifact]($SITE_ARTIFACT_URL)"; fi
} > "$body"
gh pr comment "$PR_NUMBER" --body-file "$body" --edit-last --create-if-none
