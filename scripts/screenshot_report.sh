#!/usr/bin/env bash
# Open a `timegrpo report` page in headless Chromium and save a screenshot of it (a check that a real browser
# renders the table and the plots; not part of the test suite).
#
# usage: scripts/screenshot_report.sh REPORT.html [OUT.png] [WIDTHxHEIGHT]
#   REPORT.html  the page `timegrpo report ... --out REPORT.html` wrote
#   OUT.png      the screenshot (default: REPORT.png beside the page)
#   WIDTHxHEIGHT window size in pixels (default 1400x4000: the top of the page, table and first plots)
# environment:
#   CHROMIUM=PATH   the browser (default: chromium, then chromium-browser, then google-chrome on PATH;
#                   Debian/Ubuntu: apt-get install -y chromium)
#
# The browser runs with a fresh, temporary profile, no sandbox, no GPU and no network-facing background
# services (component updates, sync, background networking), and is removed with its profile afterwards.
set -euo pipefail
if [ $# -lt 1 ] || [ ! -f "$1" ]; then
  sed -n '2,/^set -euo pipefail/p' "$0" | sed '$d; s/^# \{0,1\}//'
  exit 2
fi
page=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
out=${2:-${page%.*}.png}
size=${3:-1400x4000}
browser=${CHROMIUM:-}
if [ -z "$browser" ]; then
  for cand in chromium chromium-browser google-chrome; do
    if command -v "$cand" > /dev/null; then browser=$(command -v "$cand"); break; fi
  done
fi
[ -n "$browser" ] || { echo "no chromium found: apt-get install -y chromium, or set CHROMIUM=PATH" >&2; exit 2; }
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
"$browser" --headless --no-sandbox --disable-gpu --disable-background-networking --disable-component-update \
  --disable-sync --no-first-run --user-data-dir="$profile" --hide-scrollbars --window-size="${size/x/,}" \
  --screenshot="$out" "file://$page" 2> "$profile/stderr.log" || { cat "$profile/stderr.log" >&2; exit 1; }
[ -s "$out" ] || { echo "chromium wrote no screenshot" >&2; cat "$profile/stderr.log" >&2; exit 1; }
echo "$out"
