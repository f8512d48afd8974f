#!/usr/bin/env bash
# Installs the toolchains of the non-Rust guest modules (C, Python, JavaScript) and
# builds those modules into target/polyglot/, for host/tests/polyglot.rs.
# Called by .ci/run; safe to run again (each step is a no-op when done).
# Versions are the ones verified on this machine kind (see docs/authoring.md).
set -euo pipefail
cd "$(dirname "$0")/.."

COMPONENTIZE_PY_VERSION=0.25.1
# Bundled in the Python interpreter component (host/build.rs): the lib2to3 fork that
# translates Python 2 modules, and the one package it imports.
FISSIX_VERSION=24.4.24
APPDIRS_VERSION=1.4.4
PYTHON_DEPS=target/python-deps

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# C: Debian's clang 14 + lld + wasi-libc, and compiler-rt's wasm32 builtins
# (clang links libclang_rt.builtins-wasm32.a into every wasm32-wasi program).
if ! dpkg -s clang lld wasi-libc libclang-rt-14-dev-wasm32 >/dev/null 2>&1; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        clang lld wasi-libc libclang-rt-14-dev-wasm32
fi

# Python: componentize-py from PyPI.
if ! componentize-py --version 2>/dev/null | grep -qx "componentize-py $COMPONENTIZE_PY_VERSION"; then
    python3 -m pip install --quiet --disable-pip-version-check "componentize-py==$COMPONENTIZE_PY_VERSION"
    # pyenv's shim for the new command appears only after a rehash.
    if command -v pyenv >/dev/null; then pyenv rehash; fi
fi

# The interpreter's bundled packages, pure Python, into target/python-deps (without
# fissix's own test suite).
if ! grep -qx "Version: $FISSIX_VERSION" "$PYTHON_DEPS"/fissix-*.dist-info/METADATA 2>/dev/null; then
    rm -rf "$PYTHON_DEPS"
    python3 -m pip install --quiet --disable-pip-version-check --no-compile --target "$PYTHON_DEPS" \
        "fissix==$FISSIX_VERSION" "appdirs==$APPDIRS_VERSION"
    rm -rf "$PYTHON_DEPS/fissix/tests"
fi

# JavaScript: componentize-js from npm, pinned by guest-modules/package-lock.json, is
# installed by make (`npm ci` in guest-modules/) when node_modules is missing or stale.
# Then the C bindings tool and every module; make only redoes what changed.
make -C guest-modules polyglot
