#!/usr/bin/env bash
# Render a latefusion report.html in headless Chromium and check that it renders without errors.
#
#   scripts/check_report_chromium.sh runs/demo-synthetic-unimodal/report.html [SCREENSHOT.png]
#
# Needs Debian's chromium (`apt-get install -y chromium`); the test suite does not, it checks the
# report's structure. Checks, each printed as it passes:
#   1. the file references nothing outside itself (no http(s)/file/protocol-relative src, href or url()),
#   2. offline in Chromium, every <img> has decoded (naturalWidth > 0), and no exception was thrown,
#   3. the browser log holds no console message (the report has no scripts), failed resource load or network error,
#   4. a full-page screenshot is written (default: report.png beside the report) for a person to look at.
# Exit status 0 only if all pass.
set -euo pipefail

report=${1:?usage: $0 REPORT.html [SCREENSHOT.png]}
screenshot=${2:-$(dirname "$report")/report.png}
[[ -f $report ]] || { echo "no such file: $report" >&2; exit 2; }
browser=$(command -v chromium || command -v chromium-browser || true)
[[ -n $browser ]] || { echo "chromium not found; install it with: apt-get install -y chromium" >&2; exit 2; }

# A copy of the report with a script put just before </head>.
inject() { python3 -c 'import sys; s = open(sys.argv[1]).read(); open(sys.argv[2], "w").write(s.replace("</head>", sys.argv[3] + "</head>", 1))' "$@"; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking
       --disable-component-update --disable-sync --user-data-dir="$work/profile" --hide-scrollbars
       --enable-logging=stderr --v=0 --virtual-time-budget=5000)

echo "== 1. self-contained: no external references"
if grep -Eoi '(src|href)="(https?:|file:|//)[^"]*"|url\((https?:|file:|//)[^)]*\)|@import' "$report"; then
  echo "FAIL: the report references external resources (above)" >&2; exit 1
fi
echo "ok: no external src/href/url()/@import"

echo "== 2. render offline, every image decoded, no exception"
# A copy of the report with a tiny probe appended: after load it writes what it found into the DOM.
probe='<script>
window.__errors = [];
window.addEventListener("error", e => window.__errors.push(String(e.message || e.target && e.target.src || "error").slice(0, 60)), true);
window.addEventListener("load", () => {
  const imgs = [...document.images];
  const bad = imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt || i.src.slice(0, 40));
  const sizes = imgs.map(i => i.naturalWidth + "x" + i.naturalHeight).join(" ");
  const out = document.createElement("pre");
  out.id = "render-check";
  out.textContent = "images=" + imgs.length + " broken=" + bad.length + " errors=" + window.__errors.length + " sizes=" + sizes
    + (bad.length ? " broken:" + bad.join(",") : "") + (window.__errors.length ? " errors:" + window.__errors.join(",") : "");
  document.body.appendChild(out);
});
</script>'
probed="$work/report-probed.html"
inject "$report" "$probed" "$probe"
"$browser" "${flags[@]}" --dump-dom "file://$probed" > "$work/dom.html" 2> "$work/dom.log" || true
check=$(grep -o '<pre id="render-check">[^<]*' "$work/dom.html" | cut -d'>' -f2 || true)
echo "$check"
[[ $check =~ images=([0-9]+)\ broken=0\ errors=0 ]] && (( BASH_REMATCH[1] > 0 )) || {
  echo "FAIL: an image did not decode, an error was thrown, or the page did not load (log: below)" >&2
  tail -n 20 "$work/dom.log" >&2; exit 1; }
echo "ok"

echo "== 3. browser log: no console messages, failed loads or network errors (the unmodified report)"
"$browser" "${flags[@]}" --window-size=1100,900 --screenshot="$work/first.png" "file://$(realpath "$report")" \
  > "$work/render.out" 2> "$work/render.log" || true
cp "$work/render.log" "${screenshot%.png}.chromium.log"
if grep -Ei ':CONSOLE[:(]|Uncaught|Failed to load resource|net::ERR_' "$work/render.log" "$work/dom.log"; then
  echo "FAIL: the browser logged the errors above" >&2; exit 1
fi
echo "ok: $(wc -l < "$work/render.log") log lines (kept in ${screenshot%.png}.chromium.log), none a console message, failed load or network error"

echo "== 4. full-page screenshot"
# The page's height, from the DOM dump of a page that reports it, sets the window for one tall screenshot.
height_probe='<script>addEventListener("load",()=>{const p=document.createElement("pre");p.id="h";p.textContent="height="+document.documentElement.scrollHeight;document.body.appendChild(p)})</script>'
inject "$report" "$work/height.html" "$height_probe"
"$browser" "${flags[@]}" --window-size=1100,900 --dump-dom "file://$work/height.html" > "$work/height.dom" 2>/dev/null || true
height=$(grep -o '<pre id="h">height=[0-9]*' "$work/height.dom" | cut -d= -f3 || true)
"$browser" "${flags[@]}" --window-size="1100,${height:-4000}" --screenshot="$screenshot" "file://$(realpath "$report")" \
  > /dev/null 2>&1 || true
[[ -s $screenshot ]] || { echo "FAIL: no screenshot written" >&2; exit 1; }
echo "ok: $screenshot (1100x${height:-4000})"
echo "PASS: $report renders in $("$browser" --version 2>/dev/null)"
