#!/bin/sh
# Builds the attribution BPF object and its libbpf skeleton (a header that embeds the object), for
# binding.gyp: build.sh OUTDIR. Needs clang, llvm-strip and bpftool at build time only; the addon
# carries the object, so a user needs none of them. Reproducible: the object is compiled from
# relative paths with the debug sections stripped (the BTF that CO-RE needs is kept), so the same
# tools give the same bytes wherever the tree is.
set -eu
out=${1:?usage: build.sh OUTDIR}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)
need() {
  for c in "$@"; do
    if command -v "$c" >/dev/null 2>&1; then echo "$c"; return 0; fi
    if [ -x "/usr/sbin/$c" ]; then echo "/usr/sbin/$c"; return 0; fi
  done
  echo "build.sh: $1 is missing: install the build packages with 'bash scripts/setup.sh' (clang, llvm, bpftool, libbpf-dev)" >&2
  exit 1
}
clang=$(need clang clang-14)
strip=$(need llvm-strip llvm-strip-14)
bpftool=$(need bpftool)
arch=$(uname -m)
case "$arch" in
  x86_64) target=x86 ;;
  aarch64) target=arm64 ;;
  *) target=$arch ;;
esac
multiarch=$(cc -print-multiarch 2>/dev/null || gcc -print-multiarch 2>/dev/null || echo "$arch-linux-gnu")
cd "$here"
"$clang" -O2 -g -target bpf -D__TARGET_ARCH_$target -I"/usr/include/$multiarch" \
  -Wall -Werror -fno-ident -c owner.bpf.c -o "$out/owner.bpf.o"
"$strip" -g "$out/owner.bpf.o"
"$bpftool" gen skeleton "$out/owner.bpf.o" name owner_bpf > "$out/owner.skel.h.tmp"
mv "$out/owner.skel.h.tmp" "$out/owner.skel.h"
