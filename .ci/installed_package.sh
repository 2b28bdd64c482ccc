#!/usr/bin/env bash
# The package as a user installs it: in a fresh venv outside the repository, `pip install <repo>`; then
# `dataset-inspector scan` (and `score`, for the planted mislabeled rows and, with --detections, box errors) find every planted row of
# sample_data/PLANTED.csv, and `dataset-inspector app` answers on /_stcore/health.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PY:-python3}"
WORK="$(mktemp -d /tmp/dataset-inspector-ci.XXXXXX)"
APP_PID=""
cleanup() {
  if [ -n "$APP_PID" ]; then kill "$APP_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"                                   # nothing is imported from the checkout
"$PY" -m venv venv
venv/bin/pip install -q "$REPO"
venv/bin/dataset-inspector scan "$REPO/sample_data" --out "$WORK/r" --workspace "$WORK/ws"
venv/bin/dataset-inspector score "$REPO/sample_data" --model "$REPO/sample_data/model/model.ts.pt" --out "$WORK/s" \
  --workspace "$WORK/ws" > "$WORK/score.log"
venv/bin/dataset-inspector score "$REPO/sample_data" --detections "$REPO/sample_data/detections.json" \
  --out "$WORK/d" --workspace "$WORK/ws" > "$WORK/detections.log"
venv/bin/python "$REPO/.ci/check_planted.py" "$REPO/sample_data/PLANTED.csv" "$WORK/r/findings.csv" \
  "$WORK/s/label_issues.csv" "$WORK/d/detection_errors.csv"
PORT="${PORT:-8599}"
venv/bin/dataset-inspector app "$REPO/sample_data" --port "$PORT" > "$WORK/app.log" 2>&1 &
APP_PID=$!
for _ in $(seq 1 90); do
  if venv/bin/python -c "import sys, urllib.request as u; sys.exit(u.urlopen('http://127.0.0.1:$PORT/_stcore/health', timeout=2).read() != b'ok')" 2>/dev/null; then
    echo "dataset-inspector app answers ok on /_stcore/health"
    exit 0
  fi
  sleep 1
done
echo "dataset-inspector app did not answer on /_stcore/health within 90 s; its log:" >&2
cat "$WORK/app.log" >&2
exit 1
