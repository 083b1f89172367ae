#!/usr/bin/env bash
# Build the local test image `cauditd-test:latest` from busybox-static and the static C helpers
# in tests/image/, with `docker import` (no registry is reachable or needed). The image is
# labelled with a hash of its inputs and rebuilt only when they change.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
image=${CAUDITD_TEST_IMAGE:-cauditd-test:latest}
src=$here/tests/image

digest=$(cat /bin/busybox "$0" $(ls "$src"/*.c "$src"/dynamic/*.c 2>/dev/null) | sha256sum | cut -c1-16)
current=$(docker image inspect -f '{{index .Config.Labels "cauditd.inputs"}}' "$image" 2>/dev/null || true)
[ "$current" = "$digest" ] && exit 0

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,root,proc,sys,dev,var/log,home}
cp /bin/busybox "$root/bin/busybox"
for applet in $("$root/bin/busybox" --list-full); do
    [ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
done
for c in "$src"/*.c; do
    [ -e "$c" ] || continue
    gcc -static -O2 -o "$root/usr/bin/$(basename "$c" .c)" "$c"
done
# Dynamically linked helpers (off PATH, in /opt/dyn) with the host's loader and libc, for
# programs run through the dynamic loader.
loader=$(readlink -f /lib64/ld-linux-x86-64.so.2)
mkdir -p "$root/opt/dyn" "$root/lib64" "$root/lib/x86_64-linux-gnu"
cp "$loader" "$root/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
ln -sf /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 "$root/lib64/ld-linux-x86-64.so.2"
cp /lib/x86_64-linux-gnu/libc.so.6 "$root/lib/x86_64-linux-gnu/"
for c in "$src"/dynamic/*.c; do
    [ -e "$c" ] || continue
    gcc -O2 -o "$root/opt/dyn/$(basename "$c" .c)" "$c"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
printf 'root:*:19000:0:99999:7:::\n' > "$root/etc/shadow"
chmod 0640 "$root/etc/shadow"
tar -C "$root" -c . | docker import \
    --change "LABEL cauditd.inputs=$digest" --change 'CMD ["/bin/sh"]' - "$image" >/dev/null
echo "test-image: built $image ($digest)" >&2
