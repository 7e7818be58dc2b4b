#!/bin/sh
# Assembles the runtime image's file tree from a built `lockana` binary:
#
#   sh dist/container/rootfs.sh BINARY OUT
#
# OUT/usr/local/bin/lockana, the shared libraries `ldd` names (glibc's loader, libc,
# libm, libgcc_s; nothing else: TLS roots are compiled in), /etc/passwd and /etc/group
# with the fixed non-root user lockana (uid and gid 10001), the default config at
# /etc/lockana/lockana.hcl and the data directory /var/lib/lockana (mode 0700).
# Used by the Dockerfile's build stage and by tests/container/ on a host-built binary.
set -eu

bin=$1
out=$2
here=$(cd "$(dirname "$0")" && pwd)

rm -rf "$out"
mkdir -p "$out/usr/local/bin" "$out/etc/lockana" "$out/var/lib/lockana" "$out/tmp"
cp "$bin" "$out/usr/local/bin/lockana"
chmod 0755 "$out/usr/local/bin/lockana"

# Each library at the path the loader looks for it (symlinks resolved: no /lib ->
# usr/lib links needed in the image).
ldd "$bin" | awk '/=> \// { print $3 } /^[[:space:]]*\// { print $1 }' | while read -r lib; do
    mkdir -p "$out$(dirname "$lib")"
    cp -L "$lib" "$out$lib"
done
test -e "$out/lib64/ld-linux-x86-64.so.2" || test -n "$(ls "$out"/lib/ld-linux* 2>/dev/null)" \
    || { echo "rootfs.sh: no dynamic loader found in ldd's output" >&2; exit 1; }

cat > "$out/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
lockana:x:10001:10001:Lockana:/var/lib/lockana:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
PASSWD
cat > "$out/etc/group" <<'GROUP'
root:x:0:
lockana:x:10001:
nogroup:x:65534:
GROUP
cp "$here/lockana.hcl" "$out/etc/lockana/lockana.hcl"
chmod 0644 "$out/etc/passwd" "$out/etc/group" "$out/etc/lockana/lockana.hcl"
chmod 1777 "$out/tmp"
chmod 0700 "$out/var/lib/lockana"
