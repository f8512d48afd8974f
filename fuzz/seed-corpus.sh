#!/bin/sh
# Seeds fuzz/corpus/xdr_decode with every captured Ganglia datagram (one file each).
set -eu
cd "$(dirname "$0")"
mkdir -p corpus/xdr_decode
cat ../host/src/wire/testdata/*.hex | grep -v '^#' | awk '{print $1}' | while read -r packet; do
    printf '%s' "$packet" | xxd -r -p > "corpus/xdr_decode/$(printf '%s' "$packet" | sha1sum | cut -c1-16)"
done
ls corpus/xdr_decode | wc -l
