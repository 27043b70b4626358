#!/usr/bin/env bash
# Packs this machine's Open MPI (Debian's 4.1 layout) into DEST as a relocatable prefix, for a
# GPU machine that has none: mpirun/orted, the MCA plugins, the PMIx library and its plugins,
# the help texts, and the shared libraries they need beyond glibc. On that machine
# `source DEST/env.sh` points Open MPI and PMIx at DEST (OPAL_PREFIX, PMIX_PREFIX) and puts
# DEST/bin on PATH. Shared memory (vader) and TCP are the transports: the InfiniBand, UCX and
# libfabric plugins are left out, as are their libraries.
# Usage: tools/gpu/pack_openmpi.sh DEST
set -euo pipefail
dest=$1
arch=x86_64-linux-gnu
ompi_lib=/usr/lib/$arch/openmpi/lib
pmix=/usr/lib/$arch/pmix2
rm -rf "$dest"
mkdir -p "$dest/bin" "$dest/lib/$arch/openmpi/lib" "$dest/share" "$dest/syslib"
cp -L /usr/bin/orterun /usr/bin/orted "$dest/bin/"
ln -s orterun "$dest/bin/mpirun"
cp -a "$ompi_lib/openmpi3" "$dest/lib/$arch/openmpi/lib/"
# Plugins whose libraries a GPU machine without a fabric lacks: they would only fail to load.
(cd "$dest/lib/$arch/openmpi/lib/openmpi3" &&
  rm -f ./*ucx* ./*ofi* ./*openib* ./*psm* ./*usnic* ./*verbs* ./*portals* ./*ucc*)
cp -a /usr/share/openmpi "$dest/share/"
mkdir -p "$dest/pmix"
cp -a "$pmix/lib" "$pmix/share" "$dest/pmix/"
rm -f "$dest/pmix/lib/libpmix.a"
# Every non-glibc library the launcher, the plugins and PMIx link against.
for f in "$dest/bin/orterun" "$dest/bin/orted" "$dest"/lib/$arch/openmpi/lib/openmpi3/*.so \
  "$dest"/pmix/lib/pmix/*.so; do
  ldd "$f" | awk '/=> \// {print $3}'
done | sort -u | grep -vE '/(libc|libm|libdl|libpthread|librt|ld-linux[^/]*|libgcc_s|libstdc\+\+)\.so' |
  while read -r lib; do cp -L "$lib" "$dest/syslib/"; done
cat >"$dest/env.sh" <<'ENV'
# Sourced on the GPU machine: Open MPI and PMIx from this folder.
_ompi_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export OPAL_PREFIX=$_ompi_here PMIX_PREFIX=$_ompi_here/pmix PMIX_EXEC_PREFIX=$_ompi_here/pmix
export PATH=$_ompi_here/bin:$PATH
export LD_LIBRARY_PATH=$_ompi_here/syslib:$_ompi_here/pmix/lib:${LD_LIBRARY_PATH:-}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl=self,vader,tcp OMPI_MCA_pml=ob1 OMPI_MCA_osc=^ucx
export OMPI_MCA_mca_base_component_show_load_errors=0
unset _ompi_here
ENV
du -sh "$dest"
