#!/usr/bin/env bash
# Debian's chromium (and a font) for the real-browser tests, installed with apt-get when /usr/bin/chromium is
# missing: as root, or through sudo without a password prompt. Called by `make test` and `.ci/run`.
# Where it cannot be installed, it says why: the browser tests are then skipped with that reason, or fail when CI
# is set (tests/browser_support.py), so this exits 1 only under CI.
set -u
CHROMIUM="${DI_CHROMIUM_PATH:-/usr/bin/chromium}"   # another path only in its test
[ -x "$CHROMIUM" ] && exit 0
fail() {
  echo "ensure_chromium: $1; install Debian's chromium package ($CHROMIUM) for the real-browser tests" >&2
  [ -n "${CI:-}" ] && exit 1
  exit 0
}
command -v apt-get >/dev/null 2>&1 || fail "$CHROMIUM is missing and apt-get is not on this machine"
if [ "$(id -u)" = "0" ]; then run=(); else
  sudo -n true 2>/dev/null || fail "$CHROMIUM is missing and installing it needs root (sudo asks for a password)"
  run=(sudo -n)
fi
echo "ensure_chromium: installing chromium with apt-get (once)" >&2
"${run[@]}" apt-get update -q >/dev/null || fail "apt-get update failed"
"${run[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium fonts-dejavu-core >/dev/null \
  || fail "apt-get install chromium failed"
[ -x "$CHROMIUM" ] || fail "apt-get installed chromium but $CHROMIUM is not there"
