#!/usr/bin/env bash
# Prepares a GPU machine that has only the CUDA toolkit, a C++ compiler and CMake (no network):
# `bundle` downloads the Debian packages the build needs here, `build-and-test` unpacks them there
# into a local prefix, builds autotp with CUDA, runs the GPU tests and a short `autotp train` on
# the GPU, and writes the results as JSON.
#
# Usage:
#   tools/gpu/prepare_gpu_machine.sh bundle DIR
#       On a machine with apt (run `apt-get update` once first): downloads the .deb files into
#       DIR/debs and lists them in DIR/packages.txt. Keep DIR out of git
#       (e.g. under .dev/, which .gitignore ignores).
#   tools/gpu/prepare_gpu_machine.sh build-and-test DIR OUT [BUILD_DIR]
#       On the GPU machine, from the repository root: unpacks DIR/debs/*.deb into DIR/prefix
#       (dpkg-deb -x, no root, nothing installed system-wide), configures and builds in
#       BUILD_DIR (default DIR/build) with CMAKE_PREFIX_PATH / CMAKE_LIBRARY_PATH pointing into
#       the prefix, runs every *_CUDA test with GoogleTest JSON output into OUT/<suite>.json and
#       writes OUT/summary.json (device, per-suite counts, failed and skipped tests, numbers
#       tests record as bench_* properties, whether `autotp train configs/tiny-llama.yaml
#       --device cuda` finished 20 steps, and whether the bundled mpirun ran the 2-rank
#       collectives suite), and
#       OUT/results.tar.gz with every log and report.
#       Exit status: 0 when every selected test passed.
#   Environment (build-and-test): AUTOTP_GTEST_FILTER (default '*_CUDA*'),
#       AUTOTP_CUDA_ARCH (default: the GPU's compute capability from nvidia-smi, else 90),
#       AUTOTP_BUILD_JOBS (default: nproc).
#
# What is bundled: yaml-cpp, fmt, GoogleTest/GoogleMock (headers, CMake configs, libraries)
# and Open MPI (headers, libmpi, mpirun and its plugins), plus the runtime libraries those need
# (hwloc, libevent, PMIx, UCX, libfabric, ...): every library package in the dependency closure
# of the runtime packages, except the base libraries any Debian/Ubuntu userland with a C++
# compiler already has (glibc, libstdc++, zlib, ... : BASE_PACKAGES below) and hwloc's optional
# plugins (SKIP_PACKAGES). About 20 packages, 8 MB. The GPU machine must
# be x86-64 with a glibc at least as new as the bundling machine's (Debian 12 bundles: glibc 2.36,
# so Ubuntu 24.04 CUDA images work, Ubuntu 22.04 ones do not). NCCL is not a Debian package for
# current CUDA: the build takes it from the CUDA toolkit, else from Python's nvidia-nccl wheel
# (PyTorch images have it), else it fails naming what it looked for.
set -euo pipefail

# The packages the build and the tests use directly.
DIRECT_PACKAGES=(libyaml-cpp-dev libyaml-cpp0.7 libfmt-dev libfmt9 libgtest-dev libgmock-dev
                 libopenmpi-dev libopenmpi3 openmpi-bin openmpi-common)
# Runtime packages whose library dependencies are followed.
RUNTIME_ROOTS=(libyaml-cpp0.7 libfmt9 libopenmpi3 openmpi-bin)
# Present on any Debian/Ubuntu system with a compiler; never bundled (a bundled copy would
# shadow the system's newer one through LD_LIBRARY_PATH).
BASE_PACKAGES=" libc6 libgcc-s1 libstdc++6 libgomp1 libquadmath0 libatomic1 zlib1g libzstd1
  liblzma5 libbz2-1.0 libselinux1 libpcre2-8-0 libcrypt1 libssl3 libudev1 libtinfo6 libacl1
  libattr1 libaudit1 libaudit-common libcap-ng0 libcap2 libmd0 libbsd0 libffi8 libgmp10 libpam0g
  libpam-modules libpam-modules-bin libdb5.3 libuuid1 libsystemd0 liblz4-1 libgcrypt20
  libgpg-error0 libsemanage2 libsemanage-common libsepol2 libcom-err2 libkeyutils1 "
# Optional and heavy: hwloc loads its plugins with dlopen when present (they pull in X11,
# libxml2 and ICU, ~15 MB); without them hwloc reads the topology from /sys as usual.
SKIP_PACKAGES=" libhwloc-plugins "

usage() {
  sed -n '/^# Usage:/,/^# What is bundled/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
  exit 2
}

die() {
  echo "prepare_gpu_machine: $*" >&2
  exit 1
}

abspath() {
  mkdir -p "$1"
  (cd "$1" && pwd)
}

# ---- bundle -------------------------------------------------------------------------------

# The library packages (lib*, not -dev) that `pkg` depends on, one per line.
library_dependencies() {
  apt-cache depends --no-recommends --no-suggests --no-conflicts --no-breaks --no-replaces \
    --no-enhances "$1" 2>/dev/null |
    awk '/^ *\|?(Pre)?Depends:/ {print $2}' | grep -v '^<' | grep '^lib' | grep -v -- '-dev$' || true
}

cmd_bundle() {
  [ $# -eq 1 ] || usage
  command -v apt-get >/dev/null || die "bundle needs apt-get (run it on a Debian/Ubuntu machine)"
  local dir
  dir=$(abspath "$1")
  for p in "${DIRECT_PACKAGES[@]}"; do
    apt-cache show "$p" >/dev/null 2>&1 ||
      die "apt knows no package '$p' (run 'apt-get update' first, or this distribution names it differently)"
  done
  # Breadth-first closure over library dependencies, skipping the base set.
  local -a queue=("${RUNTIME_ROOTS[@]}")
  local seen=" " p d
  local -a libs=()
  while [ ${#queue[@]} -gt 0 ]; do
    p=${queue[0]}
    queue=("${queue[@]:1}")
    case "$seen" in *" $p "*) continue ;; esac
    seen+="$p "
    libs+=("$p")
    for d in $(library_dependencies "$p"); do
      case "$BASE_PACKAGES$SKIP_PACKAGES" in *" $d "*) continue ;; esac
      case "$seen" in *" $d "*) continue ;; esac
      queue+=("$d")
    done
  done
  local -a all
  mapfile -t all < <(printf '%s\n' "${DIRECT_PACKAGES[@]}" "${libs[@]}" | sort -u)
  rm -rf "$dir/debs"
  mkdir -p "$dir/debs"
  (cd "$dir/debs" && apt-get download "${all[@]}")
  {
    echo "# Debian packages for tools/gpu/prepare_gpu_machine.sh build-and-test ($(date -u +%F))"
    echo "# bundled on: $(. /etc/os-release && echo "$PRETTY_NAME"), $(dpkg --print-architecture)"
    for deb in "$dir"/debs/*.deb; do
      dpkg-deb -W --showformat='${Package} ${Version}\n' "$deb"
    done
  } >"$dir/packages.txt"
  echo "bundled ${#all[@]} packages into $dir/debs ($(du -sh "$dir/debs" | cut -f1))"
}

# ---- build-and-test -----------------------------------------------------------------------

# Unpacks one .deb into `prefix` with dpkg-deb, or with ar + tar where dpkg is missing.
unpack_deb() {
  local deb=$1 prefix=$2
  if command -v dpkg-deb >/dev/null; then
    dpkg-deb -x "$deb" "$prefix"
  else
    local tmp
    tmp=$(mktemp -d)
    (cd "$tmp" && ar x "$deb" && tar -xf data.tar.* -C "$prefix")
    rm -rf "$tmp"
  fi
}

# NCCL's library and include dir: CUDA toolkit first, then Python's nvidia-nccl wheel.
find_nccl() {
  local cuda=$1 d
  for d in "$cuda/lib64" "$cuda/lib" "$cuda/targets/x86_64-linux/lib" /usr/lib/x86_64-linux-gnu; do
    if [ -e "$d/libnccl.so" ] && [ -e "$cuda/include/nccl.h" ]; then
      echo "$d/libnccl.so;$cuda/include"
      return
    fi
    if [ -e "$d/libnccl.so" ] && [ -e /usr/include/nccl.h ]; then
      echo "$d/libnccl.so;/usr/include"
      return
    fi
  done
  local py
  for py in python3 /opt/torch/.venv/bin/python3; do
    d=$("$py" -c 'import nvidia.nccl, os; print(os.path.dirname(nvidia.nccl.__file__) if nvidia.nccl.__file__ else list(nvidia.nccl.__path__)[0])' 2>/dev/null) || continue
    local lib
    lib=$(ls "$d"/lib/libnccl.so* 2>/dev/null | head -1)
    if [ -n "$lib" ] && [ -e "$d/include/nccl.h" ]; then
      echo "$lib;$d/include"
      return
    fi
  done
}

cmd_build_and_test() {
  [ $# -ge 2 ] && [ $# -le 3 ] || usage
  local dir out build src
  src=$(pwd)
  [ -f "$src/CMakeLists.txt" ] && [ -d "$src/kernels/cuda" ] || die "run build-and-test from the autotp repository root"
  dir=$(abspath "$1")
  out=$(abspath "$2")
  build=$(abspath "${3:-$dir/build}")
  compgen -G "$dir/debs/*.deb" >/dev/null || die "no .deb files in $dir/debs (run the bundle mode first)"
  command -v cmake >/dev/null || die "cmake is not on the PATH"
  local cuda=${CUDA_HOME:-/usr/local/cuda}
  [ -x "$cuda/bin/nvcc" ] || die "no nvcc at $cuda/bin/nvcc (set CUDA_HOME)"
  export PATH="$cuda/bin:$PATH"

  # 1. Unpack into the prefix.
  local prefix=$dir/prefix
  rm -rf "$prefix"
  mkdir -p "$prefix"
  for deb in "$dir"/debs/*.deb; do unpack_deb "$deb" "$prefix"; done
  local multiarch
  multiarch=$(gcc -print-multiarch 2>/dev/null || true)
  multiarch=${multiarch:-x86_64-linux-gnu}
  local libdir=$prefix/usr/lib/$multiarch
  local mpi_root=$libdir/openmpi
  [ -e "$mpi_root/lib/libmpi.so" ] || die "the bundle has no Open MPI (expected $mpi_root/lib/libmpi.so)"
  # Open MPI finds its plugins, help files and wrapper data relative to OPAL_PREFIX (its
  # configuration directory is absolute, /etc/openmpi, hence OPAL_SYSCONFDIR).
  export OPAL_PREFIX=$prefix/usr OPAL_SYSCONFDIR=$prefix/etc/openmpi
  local runtime_path="$libdir:$mpi_root/lib:$cuda/lib64"

  # 2. Configure and build.
  local arch=${AUTOTP_CUDA_ARCH:-}
  if [ -z "$arch" ] && command -v nvidia-smi >/dev/null; then
    arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d '. ')
  fi
  arch=${arch:-90}
  local nccl nccl_args=()
  nccl=$(find_nccl "$cuda")
  [ -n "$nccl" ] || die "NCCL not found: looked in $cuda/lib64, $cuda/lib and Python's nvidia.nccl"
  nccl_args=(-DAUTOTP_NCCL_LIBRARY="${nccl%%;*}" -DAUTOTP_NCCL_INCLUDE_DIR="${nccl##*;}")
  runtime_path="$runtime_path:$(dirname "${nccl%%;*}")"
  mkdir -p "$out"
  local generator=()
  command -v ninja >/dev/null && generator=(-G Ninja)
  echo "== configure ($build, CUDA arch $arch, NCCL ${nccl%%;*})"
  # MPI without its compiler wrapper (it would need the bundled libraries on the loader's path
  # inside CMake): FindMPI takes the header dir and libmpi given here.
  cmake -S "$src" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_CUDA_ARCHITECTURES="$arch" -DCMAKE_CUDA_COMPILER="$cuda/bin/nvcc" \
    -DCMAKE_PREFIX_PATH="$prefix/usr;$libdir/cmake" -DCMAKE_LIBRARY_PATH="$libdir" \
    -DMPI_CXX_COMPILER=MPI_CXX_COMPILER-NOTFOUND -DMPI_CXX_HEADER_DIR="$mpi_root/include" \
    -DMPI_CXX_LIB_NAMES=mpi -DMPI_mpi_LIBRARY="$mpi_root/lib/libmpi.so" \
    -DMPIEXEC_EXECUTABLE="$prefix/usr/bin/mpirun.openmpi" \
    "${nccl_args[@]}" 2>&1 | tee "$out/configure.log"
  echo "== build"
  if ! cmake --build "$build" -j "${AUTOTP_BUILD_JOBS:-$(nproc)}" 2>&1 | tee "$out/build.log" |
    tail -5; then
    die "build failed (see $out/build.log)"
  fi

  # 3. Tests: every suite with the GPU filter, one JSON report each.
  export LD_LIBRARY_PATH="$runtime_path${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  local filter=${AUTOTP_GTEST_FILTER:-*_CUDA*}
  nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv,noheader \
    >"$out/device.txt" 2>/dev/null || echo "unknown (nvidia-smi failed)" >"$out/device.txt"
  local status=0 exe name
  for exe in "$build"/bin/test_*; do
    [ -x "$exe" ] && [ -f "$exe" ] || continue
    name=$(basename "$exe")
    case "$name" in *_mpi) continue ;; esac  # MPI suites run under mpirun, below
    echo "== $name"
    if ! "$exe" --gtest_filter="$filter" --gtest_output="json:$out/$name.json" >"$out/$name.log" 2>&1; then
      status=1
    fi
    grep -E "^\[  (PASSED|FAILED|SKIPPED) " "$out/$name.log" | head -20 || true
  done
  # The CLI on the GPU: 20 steps of the tiny Llama (reported and counted in the exit status).
  echo "== autotp train configs/tiny-llama.yaml --device cuda --set train.steps=20"
  if "$build/bin/autotp" train "$src/configs/tiny-llama.yaml" --device cuda \
    --set train.steps=20 --out "$out/train_cuda" >"$out/train_cuda.log" 2>&1 &&
    grep -q "^done: 20 steps" "$out/train_cuda.log"; then
    grep "^done:" "$out/train_cuda.log" >"$out/train_cuda.txt"
  else
    echo "failed (see train_cuda.log)" >"$out/train_cuda.txt"
    status=1
  fi
  cat "$out/train_cuda.txt"
  # The bundled mpirun: the collectives suite on 2 ranks (CPU tensors; reported, not counted
  # in the exit status, which is about the GPU tests).
  if [ -x "$build/bin/test_comm_mpi" ]; then
    echo "== mpirun -np 2 test_comm_mpi"
    if timeout 300 "$prefix/usr/bin/mpirun.openmpi" -np 2 --oversubscribe \
      "$build/bin/test_comm_mpi" >"$out/mpi_smoke.log" 2>&1; then
      echo passed >"$out/mpi_smoke.txt"
    else
      echo "failed (see mpi_smoke.log)" >"$out/mpi_smoke.txt"
    fi
    cat "$out/mpi_smoke.txt"
  fi
  write_summary "$out" "$status"
  # Everything in one archive too, for transports that fetch few files.
  tar -czf "$dir/results.tar.gz" -C "$out" . && mv "$dir/results.tar.gz" "$out/results.tar.gz"
  return $status
}

# OUT/summary.json from the GoogleTest JSON reports (python3 when present, else a shell summary).
write_summary() {
  local out=$1 status=$2
  if command -v python3 >/dev/null; then
    python3 - "$out" "$status" <<'PY'
import glob, json, os, sys
out, status = sys.argv[1], int(sys.argv[2])
summary = {"device": open(os.path.join(out, "device.txt")).read().strip(),
           "all_passed": status == 0, "suites": {}, "failed": [], "skipped": [], "benchmark": {}}
smoke = os.path.join(out, "mpi_smoke.txt")
summary["mpi_smoke"] = open(smoke).read().strip() if os.path.exists(smoke) else "not run"
train = os.path.join(out, "train_cuda.txt")
summary["train_cuda"] = open(train).read().strip() if os.path.exists(train) else "not run"
for path in sorted(glob.glob(os.path.join(out, "test_*.json"))):
    with open(path) as f:
        report = json.load(f)
    counts = {"tests": 0, "failures": 0, "skipped": 0}
    for suite in report.get("testsuites", []):
        for case in suite.get("testsuite", []):
            counts["tests"] += 1
            full = suite["name"] + "." + case["name"]
            if case.get("failures"):
                counts["failures"] += 1
                summary["failed"].append(full)
            elif case.get("result") == "SKIPPED" or case.get("status") == "NOTRUN":
                counts["skipped"] += 1
                summary["skipped"].append(full)
            # Benchmarks record their numbers as test properties (RecordProperty).
            for key, value in case.items():
                if key.startswith("bench_"):
                    try:
                        summary["benchmark"][key[len("bench_"):]] = float(value)
                    except (TypeError, ValueError):
                        summary["benchmark"][key[len("bench_"):]] = value
    summary["suites"][os.path.basename(path)[:-len(".json")]] = counts
with open(os.path.join(out, "summary.json"), "w") as f:
    json.dump(summary, f, indent=2)
print(json.dumps({k: summary[k] for k in ("device", "all_passed", "failed", "benchmark",
                                          "train_cuda", "mpi_smoke")}, indent=2))
PY
  else
    printf '{"device": "%s", "all_passed": %s}\n' "$(cat "$out/device.txt")" \
      "$([ "$status" -eq 0 ] && echo true || echo false)" >"$out/summary.json"
    cat "$out/summary.json"
  fi
}

[ $# -ge 1 ] || usage
mode=$1
shift
case "$mode" in
  bundle) cmd_bundle "$@" ;;
  build-and-test) cmd_build_and_test "$@" ;;
  *) usage ;;
esac
