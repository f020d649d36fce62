#!/usr/bin/env bash
# Build the emulated aarch64 device (``--remote qemu:cortex-a53|a72|a76``) from Debian's arm64 packages and aarch64
# wheels of this host's exact numpy, onnxruntime and ai-edge-litert versions, plus the instruction-count TCG plugin.
# Cached in ${HSNET_ARM_HOME:-~/.cache/hsnet/arm64}; rebuilt only when a version in its stamp changes.
# Needs (Debian): qemu-user (the dynamic qemu-aarch64, the one that loads plugins), mmdebstrap, gcc, pkg-config,
# libglib2.0-dev, dpkg-dev (dpkg-source); .ci/install installs them. Nothing here touches the machine's apt setup.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
home="${HSNET_ARM_HOME:-$HOME/.cache/hsnet/arm64}"
python="${PYTHON:-python3}"

versions=$("$python" - <<'EOF'
from importlib.metadata import version
print(" ".join(f"{d}=={version(d)}" for d in ("numpy", "onnxruntime", "ai-edge-litert")))
EOF
)
qemu_version=$(qemu-aarch64 --version | head -n1)
recipe=$(cat "$here/build.sh" "$here/insn_count.c" "$here"/cpuinfo/* | sha256sum | cut -c1-16)
stamp="python3.11 $versions | $qemu_version | recipe $recipe"
if [ -f "$home/stamp" ] && [ "$(cat "$home/stamp")" = "$stamp" ]; then
    echo "emulated aarch64 device: up to date in $home ($versions)"
    exit 0
fi
echo "emulated aarch64 device: building in $home ($versions)"
rm -rf "$home.partial"
mkdir -p "$home.partial"
work="$home.partial"

# The machine's own Debian mirror (deb822 sources first, then the one-line format).
mirror=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\/debian\)\/\{0,1\}$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
    mirror=$(sed -n 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\{0,1\}\([^[:space:]]*\/debian\)\/\{0,1\}[[:space:]].*/\2/p' /etc/apt/sources.list | head -n1)
fi
mirror="${mirror:-http://deb.debian.org/debian}"

# 1. An arm64 userland with Python (extracted, not configured: qemu-user runs it with -L, no chroot or binfmt).
mmdebstrap --quiet --variant=extract --arch=arm64 \
    --include=python3,python3-minimal,libpython3.11-stdlib,libstdc++6,libgomp1 \
    bookworm "$work/rootfs" "$mirror" >/dev/null

# 2. aarch64 wheels of the host's versions, installed into a folder the emulated Python puts on its path.
platforms=(--platform manylinux2014_aarch64 --platform manylinux_2_27_aarch64 --platform manylinux_2_28_aarch64)
# shellcheck disable=SC2086  # $versions is a list of requirement words
"$python" -m pip download --quiet --disable-pip-version-check -d "$work/wheels" --only-binary=:all: \
    --python-version 3.11 --implementation cp --abi cp311 "${platforms[@]}" $versions
# shellcheck disable=SC2086
"$python" -m pip install --quiet --disable-pip-version-check --no-index --find-links "$work/wheels" \
    --target "$work/site" --no-warn-conflicts --root-user-action=ignore --only-binary=:all: --python-version 3.11 --implementation cp --abi cp311 \
    "${platforms[@]}" $versions
rm -rf "$work/wheels"

# 3. The TCG plugin, built against qemu-plugin.h from Debian's qemu source package of the installed qemu (a private
#    sources list and apt state: the machine's apt configuration is not touched).
src="$work/qemu-src"
mkdir -p "$src/lists/partial" "$src/cache/archives/partial"
printf 'deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s bookworm main\n' "$mirror" \
    > "$src/sources.list"
apt_opts=(-o "Dir::Etc::SourceList=$src/sources.list" -o Dir::Etc::SourceParts=/nonexistent
          -o "Dir::State::Lists=$src/lists" -o "Dir::Cache=$src/cache" -o APT::Sandbox::User=root)
apt-get "${apt_opts[@]}" -qq update
qemu_deb_version=$(dpkg-query -W -f='${source:Version}' qemu-user)
(cd "$src" && apt-get "${apt_opts[@]}" -qq source --download-only "qemu=$qemu_deb_version" >/dev/null)
tar -xf "$src"/qemu_*.orig.tar.* -C "$src" --wildcards '*/include/qemu/qemu-plugin.h' --strip-components=3
# shellcheck disable=SC2046  # pkg-config prints several flags
gcc -O2 -shared -fPIC -Wall -Werror -I"$src" $(pkg-config --cflags glib-2.0) -o "$work/insn_count.so" \
    "$here/insn_count.c" $(pkg-config --libs glib-2.0)
rm -rf "$src"

# 4. One prefix per core model: the shared userland plus that core's /proc/cpuinfo (qemu 7.2 passes the host's
#    through, and onnxruntime's cpuinfo crashes on an x86 one; it must match QEMU_CPU: an A76 file on an A53 gives
#    SIGILL on int8).
for cpu in cortex-a53 cortex-a72 cortex-a76; do
    prefix="$work/cpu/$cpu"
    mkdir -p "$prefix/proc"
    for name in usr bin sbin lib lib64 etc; do  # not tmp, var, dev: the guest sees the host's (qemu looks a
        [ -e "$work/rootfs/$name" ] && ln -s "../../rootfs/$name" "$prefix/$name"  # path up in the prefix first)
    done
    cp "$here/cpuinfo/$cpu" "$prefix/proc/cpuinfo"
done

# 5. The device's python3: the emulated aarch64 Python (QEMU_CPU names the core; hsnet sets it), with the plugin
#    loaded when HSNET_INSN_FILE names a file for its counts. Every other command of the device is the host's.
mkdir -p "$work/bin"
cat > "$work/bin/python3" <<'SHIM'
#!/bin/sh
# python3 of hsnet's emulated aarch64 device (hsnet/devices/emulated/build.sh)
d=$(dirname "$(dirname "$(readlink -f "$0")")")
cpu="${QEMU_CPU:?QEMU_CPU names the emulated core: cortex-a53, cortex-a72 or cortex-a76}"
[ -d "$d/cpu/$cpu" ] || { echo "no emulated core $cpu in $d/cpu (cortex-a53, cortex-a72, cortex-a76)" >&2; exit 2; }
if [ -n "${HSNET_INSN_FILE:-}" ]; then
    export QEMU_PLUGIN="file=$d/insn_count.so" PYTHONHASHSEED=0
fi
export QEMU_LD_PREFIX="$d/cpu/$cpu" PYTHONPATH="$d/site${PYTHONPATH:+:$PYTHONPATH}"
exec qemu-aarch64 "$d/rootfs/usr/bin/python3" "$@"
SHIM
chmod +x "$work/bin/python3"
ln -s python3 "$work/bin/python"

echo "$stamp" > "$work/stamp"
rm -rf "$home"
mv "$work" "$home"
echo "emulated aarch64 device: built in $home ($(du -sh "$home" | cut -f1))"
