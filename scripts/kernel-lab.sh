#!/usr/bin/env bash
# The ferry kernel lab: run a command under a Linux kernel that has kTLS.
#
#   scripts/kernel-lab.sh --prepare              download + unpack the kernel, build the initramfs
#   scripts/kernel-lab.sh [--prepare] -- CMD...  (prepare if needed, then) run CMD in the lab
#
# The development machines' kernel has no CONFIG_TLS, so ferry's kTLS path cannot be
# exercised on the host. The lab boots Debian's stock kernel (the package that
# linux-image-amd64 depends on, unpacked with dpkg -x, never installed) under
# qemu-system-x86_64 with TCG (KVM hangs on these machines), with a tiny busybox
# initramfs (scripts/kernel-lab/init) that mounts the host's / over 9p, loads the tls
# module, brings lo up and runs CMD chrooted to the host root, in the current
# directory, with the host's PATH (so the host's node and the repo's dist/ are used
# as they are). CMD sees FERRY_IN_LAB=1; CI and FERRY_* are passed through.
#
# Exit status: CMD's own status; 124 if the lab timed out (FERRY_LAB_TIMEOUT seconds,
# default 300; qemu is killed); 125 if the lab could not be prepared or did not report
# a status (boot failure). Messages from this script start with "kernel-lab:".
#
# Cache: $FERRY_LAB_CACHE, default /var/cache/ferry-kernel-lab (kernel + initramfs,
# about 80 MB, built once, guarded by flock against concurrent prepares; each run
# gets a temporary directory runs/XXXX there, removed at the end). Needs root (the 9p
# passthrough share writes as the caller), and the Debian packages qemu-system-x86,
# busybox-static, cpio, kmod (depmod/modprobe), and apt access for the kernel.
#
# Binaries run in the lab must not be built with -march=native: TCG's "max" CPU has
# no AVX-512.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${FERRY_LAB_CACHE:-/var/cache/ferry-kernel-lab}
timeout_s=${FERRY_LAB_TIMEOUT:-300}

say() { echo "kernel-lab: $*" >&2; }
fail() { say "$*"; exit 125; }

prepare_only=0
cmd=()
while [ $# -gt 0 ]; do
  case "$1" in
    --prepare) prepare_only=1; shift ;;
    --) shift; cmd=("$@"); break ;;
    -h|--help) sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) fail "unknown argument '$1' (usage: kernel-lab.sh [--prepare] [-- COMMAND...])" ;;
  esac
done
if [ ${#cmd[@]} -eq 0 ] && [ $prepare_only -eq 0 ]; then
  fail "no command (usage: kernel-lab.sh [--prepare] [-- COMMAND...])"
fi

need() { command -v "$1" >/dev/null 2>&1 || fail "'$1' not found (install the Debian package $2)"; }

# Bump when the initramfs recipe changes, so cached labs are rebuilt.
recipe=2
# Modules the lab needs, in load order (their own dependencies are resolved with
# modprobe --show-depends). The crypto ones are not module dependencies of tls but are
# requested at runtime (crypto_alloc_aead("gcm(aes)") → request_module), and the
# initramfs has no modprobe: ctr and ghash for the generic gcm template, aesni-intel
# and ghash-clmulni-intel for the fast ones (TCG's "max" CPU has AES-NI and PCLMUL).
modules=(virtio_pci 9pnet_virtio 9p ctr ghash_generic gcm aesni_intel ghash_clmulni_intel tls)

is_ready() {
  [ -f "$cache/ready" ] && [ "$(cat "$cache/ready")" = "recipe $recipe" ] && [ "$cache/ready" -nt "$here/kernel-lab/init" ]
}

prepare() {
  is_ready && return 0
  need qemu-system-x86_64 qemu-system-x86
  need cpio cpio
  need depmod kmod
  need modprobe kmod
  need apt-get apt
  need dpkg dpkg
  [ -x /bin/busybox ] || fail "/bin/busybox not found (install the Debian package busybox-static)"
  file -L /bin/busybox 2>/dev/null | grep -q 'statically linked' ||
    { ldd /bin/busybox >/dev/null 2>&1 && fail "/bin/busybox is not static (install busybox-static)"; }
  mkdir -p "$cache" || fail "cannot create $cache"
  exec 9>"$cache/.lock"
  flock 9
  # Another prepare may have finished while we waited for the lock.
  is_ready && { exec 9>&-; return 0; }

  local work="$cache/build.$$" rc
  rm -rf "$work"; mkdir -p "$work"
  # The subshell must not be the left side of || : that would switch off set -e in it.
  set +e
  (
    set -e
    cd "$work"
    chmod 755 .   # apt's _apt user must be able to write the download here
    say "downloading the Debian kernel (linux-image-amd64's dependency)..."
    if ! apt-get -o APT::Sandbox::User=root download -q linux-image-amd64 >/dev/null 2>&1; then
      apt-get update -qq >/dev/null 2>&1 || true
      apt-get -o APT::Sandbox::User=root download -q linux-image-amd64 >/dev/null || { say "apt-get download linux-image-amd64 failed"; exit 1; }
    fi
    dep=$(dpkg-deb -f linux-image-amd64_*.deb Depends | sed -n 's/^\(linux-image-[^ ,]*\).*/\1/p')
    [ -n "$dep" ] || { say "cannot read the kernel package from linux-image-amd64's Depends"; exit 1; }
    apt-get -o APT::Sandbox::User=root download -q "$dep" >/dev/null || { say "apt-get download $dep failed"; exit 1; }
    dpkg -x "$dep"_*.deb kroot
    kver=$(ls kroot/lib/modules | head -n1)
    [ -n "$kver" ] && [ -f "kroot/boot/vmlinuz-$kver" ] || { say "no kernel image in $dep"; exit 1; }
    grep -q '^CONFIG_TLS=[ym]' "kroot/boot/config-$kver" || { say "$dep has no CONFIG_TLS"; exit 1; }
    depmod -b "$work/kroot" "$kver"

    # initramfs: static busybox, /init, and the modules in dependency order.
    mkdir -p initrd/bin initrd/modules
    cp /bin/busybox initrd/bin/busybox
    cp "$here/kernel-lab/init" initrd/init
    chmod 755 initrd/init
    : >initrd/modules.list
    for m in "${modules[@]}"; do
      modprobe -d "$work/kroot" -S "$kver" --show-depends "$m" | while read -r verb path _; do
        [ "$verb" = insmod ] || continue
        name=$(basename "$path")
        case "$name" in
          *.ko.xz) xz -dc "$path" >"initrd/modules/${name%.xz}"; name=${name%.xz} ;;
          *.ko.zst) zstd -qdc "$path" >"initrd/modules/${name%.zst}"; name=${name%.zst} ;;
          *.ko.gz) gzip -dc "$path" >"initrd/modules/${name%.gz}"; name=${name%.gz} ;;
          *) cp "$path" "initrd/modules/$name" ;;
        esac
        grep -qx "$name" initrd/modules.list || echo "$name" >>initrd/modules.list
      done
    done
    for m in "${modules[@]}"; do
      grep -qx "${m//_/[-_]}.ko" initrd/modules.list ||
        modprobe -d "$work/kroot" -S "$kver" --show-depends "$m" | grep -q '^builtin ' ||
        { say "module $m not found in $dep"; exit 1; }
    done
    (cd initrd && find . | cpio -o -H newc --quiet | gzip -1 >../initrd.img)
    cp "kroot/boot/vmlinuz-$kver" vmlinuz
    echo "$kver" >kver
  )
  rc=$?
  set -e
  [ $rc -eq 0 ] || { rm -rf "$work"; fail "prepare failed (see above)"; }
  rm -f "$cache/ready"
  rm -rf "$cache/kernel" "$cache/initrd.img"
  mv "$work/vmlinuz" "$cache/kernel"
  mv "$work/initrd.img" "$cache/initrd.img"
  mv "$work/kver" "$cache/kver"
  rm -rf "$work"
  echo "recipe $recipe" >"$cache/ready"
  say "prepared kernel $(cat "$cache/kver") in $cache"
  exec 9>&-
}

prepare
[ ${#cmd[@]} -eq 0 ] && exit 0

need qemu-system-x86_64 qemu-system-x86
[ "$(id -u)" = 0 ] || fail "must run as root (the 9p passthrough share of / needs it)"

mkdir -p "$cache/runs"
run=$(mktemp -d "$cache/runs/run.XXXXXX")
qpid=
cleanup() {
  if [ -n "$qpid" ] && kill -0 "$qpid" 2>/dev/null; then
    kill -TERM "$qpid" 2>/dev/null || true
    wait "$qpid" 2>/dev/null || true
  fi
  rm -rf "$run"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT TERM HUP

cwd=$(pwd -P)
case "$cwd/" in /tmp/*) touch "$run/keep-host-tmp" ;; esac
case "$run/" in /tmp/*) touch "$run/keep-host-tmp" ;; esac
{
  echo "# written by kernel-lab.sh"
  printf 'cd %q || exit 125\n' "$cwd"
  printf 'export PATH=%q HOME=/root TERM=dumb LANG=C.UTF-8 FERRY_IN_LAB=1\n' "$PATH"
  [ -n "${CI:-}" ] && printf 'export CI=%q\n' "$CI"
  while IFS='=' read -r name _; do
    case "$name" in FERRY_LAB_*) ;; FERRY_*) printf 'export %s=%q\n' "$name" "${!name}" ;; esac
  done < <(env)
  printf 'exec'
  printf ' %q' "${cmd[@]}"
  printf '\n'
} >"$run/cmd.sh"

say "booting $(cat "$cache/kver") (timeout ${timeout_s}s)"
timeout -k 10 "$timeout_s" qemu-system-x86_64 \
  -accel tcg -cpu max -m 2G -smp 2 \
  -nodefaults -no-user-config -display none -monitor none -serial stdio -no-reboot \
  -kernel "$cache/kernel" -initrd "$cache/initrd.img" \
  -append "console=ttyS0 quiet loglevel=1 panic=-1 ferry_run=$run" \
  -virtfs local,path=/,mount_tag=hostroot,security_model=passthrough,multidevs=remap \
  </dev/null &
qpid=$!
set +e
wait "$qpid"
qrc=$?
set -e
qpid=
if [ $qrc -eq 124 ] || [ $qrc -eq 137 ]; then
  say "timed out after ${timeout_s}s; qemu killed"
  exit 124
fi
if [ ! -f "$run/status" ]; then
  fail "the lab exited (qemu status $qrc) without reporting the command's status"
fi
status=$(cat "$run/status")
exit "$status"
