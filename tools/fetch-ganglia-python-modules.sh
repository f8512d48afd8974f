#!/usr/bin/env bash
# Fetches gmond's own python modules (gmond/python_modules/ of Ganglia 3.7.2) from
# Debian's source package `ganglia`, as the reference modpython.so build does, into
# target/ganglia-3.7.2/gmond/python_modules/ for host/tests/gmond_python.rs. They are
# not vendored: some are GPL, and the tests run them exactly as shipped.
# Safe to run again: a no-op once the files are there.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=target/ganglia-3.7.2
if [ -f "$OUT/gmond/python_modules/cpu/cpu_stats.py" ]; then exit 0; fi

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# A temporary deb-src entry for the Debian archive the binary packages come from.
src=/etc/apt/sources.list.d/zz-wasmond-ganglia-src.sources
printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    | as_root tee "$src" >/dev/null
as_root apt-get update -qq
(cd "$work" && apt-get source --download-only ganglia >/dev/null 2>&1) || true
as_root rm -f "$src"
as_root apt-get update -qq
test -f "$work/ganglia_3.7.2.orig.tar.gz" || { echo "could not fetch Debian's ganglia 3.7.2 source" >&2; exit 1; }
mkdir -p target
tar -xzf "$work/ganglia_3.7.2.orig.tar.gz" -C target ganglia-3.7.2/gmond/python_modules ganglia-3.7.2/COPYING
echo "fetched $OUT/gmond/python_modules"
