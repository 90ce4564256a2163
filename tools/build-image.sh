#!/usr/bin/env bash
# Builds a tiny local "busybox" container image from the host's static busybox (Debian package
# busybox-static) so that pods naming busybox run with --pull=never and no registry.
#
# The rootfs holds /bin/busybox, one symlink per applet in /bin (as `busybox --install -s` would,
# all in /bin, including /bin/sh; plus /usr/bin/env for `#!/usr/bin/env` scripts), /etc/passwd and
# /etc/group with root and nobody, /root and /tmp.
# It is imported with `podman import` (no network, no base image) with CMD ["sh"], and tagged as
#   docker.io/library/busybox:latest  docker.io/library/busybox:1.36
# so that `busybox`, `busybox:latest`, `docker.io/library/busybox[:latest]` and `busybox:1.36`
# all resolve locally. Re-running is a no-op when the image already carries the same busybox
# version (label mobius.busybox.version) and layout revision (label mobius.image.rev).
#
# Environment:
#   MOBIUS_PODMAN_FLAGS  podman global options, word-split, e.g. "--root D --runroot R"
#   BUSYBOX              static busybox to use (default: the one on PATH, /bin/busybox on Debian)
#   FORCE=1              rebuild even if the image is up to date
# Usage: build-image.sh [--force]
set -euo pipefail

IMAGE_REPO=docker.io/library/busybox
IMAGE_TAGS=(latest 1.36)
# Bump when the rootfs layout or image config below changes, so existing images get rebuilt.
LAYOUT_REV=2

FORCE=${FORCE:-0}
case "${1:-}" in
  "") ;;
  --force) FORCE=1 ;;
  *) echo "usage: $0 [--force]   (env: MOBIUS_PODMAN_FLAGS, BUSYBOX, FORCE=1)" >&2; exit 2 ;;
esac

step="starting"
hint=""
fail() {
  echo "build-image: FAILED: $*" >&2
  [ -n "$hint" ] && echo "build-image: how to fix: $hint" >&2
  exit 1
}
trap 'rc=$?; [ $rc -ne 0 ] && fail "$step (exit $rc, line $LINENO: $BASH_COMMAND)"' ERR

read -r -a PODMAN_FLAGS <<< "${MOBIUS_PODMAN_FLAGS:-}"
pm() { podman ${PODMAN_FLAGS[@]+"${PODMAN_FLAGS[@]}"} "$@"; }

step="looking for podman"
hint="install podman (Debian: apt-get install podman runc uidmap slirp4netns fuse-overlayfs)"
command -v podman >/dev/null || fail "podman is not on PATH"

step="looking for a static busybox"
hint="install busybox-static (Debian: apt-get install busybox-static) or set BUSYBOX=/path/to/static/busybox"
bb=${BUSYBOX:-$(command -v busybox || true)}
[ -n "$bb" ] && [ -x "$bb" ] || fail "no busybox binary found (BUSYBOX='${BUSYBOX:-}')"
bb=$(readlink -f "$bb")
if command -v file >/dev/null && ! file -L "$bb" | grep -qE 'statically linked|static-pie linked'; then
  fail "$bb is not statically linked; it would not run inside an empty image"
fi
# First line: "BusyBox v1.35.0 (Debian 1:1.35.0-4+deb12u1+b1) multi-call binary."
version=$("$bb" 2>&1 | sed -n '1s/^BusyBox v\{0,1\}\([^ ]*\)\( (\([^)]*\))\)\{0,1\}.*/\1 \3/p' | sed 's/ *$//')
[ -n "$version" ] || fail "could not read the version from '$bb' (is it busybox?)"

# --- up to date? ------------------------------------------------------------------------------
step="checking the podman image store"
hint="check that podman works: podman ${MOBIUS_PODMAN_FLAGS:-} info (root needs no extra setup; \
rootless needs /etc/subuid and /etc/subgid entries)"
pm info --format '{{.Store.GraphRoot}}' >/dev/null || fail "podman info failed"

# Serialise concurrent runs (e.g. parallel test sessions) so that one imports and the others skip.
if command -v flock >/dev/null; then
  exec 9>"${TMPDIR:-/tmp}/mobius-build-image.lock"
  flock 9
fi

up_to_date() {
  local id="" t cur
  for t in "${IMAGE_TAGS[@]}"; do
    cur=$(pm image inspect --format '{{.Id}} {{index .Labels "mobius.busybox.version"}}|{{index .Labels "mobius.image.rev"}}' \
      "$IMAGE_REPO:$t" 2>/dev/null) || return 1
    [ "${cur#* }" = "$version|$LAYOUT_REV" ] || return 1
    [ -z "$id" ] || [ "$id" = "${cur%% *}" ] || return 1
    id=${cur%% *}
  done
}
if [ "$FORCE" != 1 ] && up_to_date; then
  echo "build-image: $IMAGE_REPO (busybox $version) is up to date"
  exit 0
fi

# --- rootfs -----------------------------------------------------------------------------------
step="creating the rootfs"
hint="check free space and permissions under \${TMPDIR:-/tmp}"
work=$(mktemp -d "${TMPDIR:-/tmp}/mobius-busybox.XXXXXX")
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"
mkdir -p "$rootfs/bin" "$rootfs/usr/bin" "$rootfs/etc" "$rootfs/root" "$rootfs/tmp"
chmod 1777 "$rootfs/tmp"
chmod 0700 "$rootfs/root"
cp "$bb" "$rootfs/bin/busybox"
chmod 0755 "$rootfs/bin/busybox"
applets=$("$bb" --list)
[ -n "$applets" ] || fail "'$bb --list' printed no applets"
for a in $applets sh; do
  [ "$a" = busybox ] || [ -e "$rootfs/bin/$a" ] || ln -s busybox "$rootfs/bin/$a"
done
ln -s ../../bin/busybox "$rootfs/usr/bin/env"
cat > "$rootfs/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat > "$rootfs/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
EOF
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$rootfs" -cf "$work/rootfs.tar" .

# Images these tags name now; removed after a successful rebuild (if no container uses them).
old_ids=$(for t in "${IMAGE_TAGS[@]}"; do pm image inspect --format '{{.Id}}' "$IMAGE_REPO:$t" 2>/dev/null || true; done | sort -u)

# --- import and tag ---------------------------------------------------------------------------
step="importing the rootfs with podman import"
hint="see the podman error above; check the storage flags in MOBIUS_PODMAN_FLAGS ('${MOBIUS_PODMAN_FLAGS:-}') \
and that the storage root is writable and not on an overlay/NFS that overlayfs cannot use"
id=$(pm import --quiet \
  --change 'CMD ["sh"]' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change "LABEL mobius.busybox.version=\"$version\"" \
  --change "LABEL mobius.image.rev=\"$LAYOUT_REV\"" \
  --message "mobius busybox $version" \
  "$work/rootfs.tar" "$IMAGE_REPO:${IMAGE_TAGS[0]}")
id=${id#sha256:}
step="tagging the image"
for t in "${IMAGE_TAGS[@]:1}"; do
  pm tag "$id" "$IMAGE_REPO:$t"
done

# --- smoke test -------------------------------------------------------------------------------
# Root without CAP_SYS_RESOURCE cannot give a container podman's default nofile/nproc (1048576),
# so the smoke test asks for small limits that any host allows.
smoke=(run --rm --pull=never --network=none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 busybox echo ok)
step="running the image (podman ${smoke[*]})"
hint="see the podman error above; 'error setting rlimit' means --ulimit nofile=/nproc= must stay within \
'ulimit -Hn -Hu' (and nproc within /proc/sys/kernel/pid_max); on cgroup v1/hybrid hosts add \
'--cgroup-manager=cgroupfs' to MOBIUS_PODMAN_FLAGS"
# A failed check removes the new image, so that the next run rebuilds and checks again.
untag() { pm rmi -f "$id" >/dev/null 2>&1 || true; }
out=$(pm "${smoke[@]}") || { rc=$?; untag; fail "$step (exit $rc)"; }
[ "$out" = ok ] || { untag; fail "expected 'ok' from the image, got '$out'"; }
step="checking that the short names resolve locally"
hint="another local image may shadow them: podman ${MOBIUS_PODMAN_FLAGS:-} images; remove it with podman rmi"
for n in busybox busybox:latest busybox:1.36 docker.io/library/busybox docker.io/library/busybox:latest; do
  [ "$(pm image inspect --format '{{.Id}}' "$n" 2>/dev/null)" = "$id" ] \
    || { untag; fail "image name '$n' does not resolve to the new image $id"; }
done
for o in $old_ids; do
  [ "$o" = "$id" ] || pm rmi "$o" >/dev/null 2>&1 || true
done
echo "build-image: built $IMAGE_REPO:{$(IFS=,; echo "${IMAGE_TAGS[*]}")} from busybox $version (${id:0:12})"
