"""Carry Triton's compiled kernels to a GPU machine, so that its lease does not spend minutes
compiling what a machine without a GPU compiled before (``scripts/gpu_carry.sh``).

Triton looks a kernel up in its cache (``TRITON_CACHE_DIR``) by a hash of the Triton build, the
kernel's source, its specialisation (argument dtypes, divisibility by 16), the target and the
compile options. ``scripts/triton_compile_check.py`` compiles every kernel variant through
Triton's own launch path, so with the same Triton build its cache entries are the ones a GPU
launch looks for. Each entry is a folder of files (every intermediate IR, the cubin, a metadata
JSON) and a group file naming them by absolute path.

    python scripts/triton_cache.py pack CACHE_DIR ARCHIVE.tar.xz
        keeps the cubins, metadata and group files (a launch reads no other), plus the
        fingerprint of this Triton build (``triton-build.txt``)
    python scripts/triton_cache.py unpack ARCHIVE.tar.xz CACHE_DIR
        extracts into CACHE_DIR, points the group files at their new place, and says whether this
        machine's Triton build is the one that compiled them (if not, nothing will be found)
    python scripts/triton_cache.py count CACHE_DIR
        the number of compiled kernels in CACHE_DIR
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import tarfile
from pathlib import Path

FINGERPRINT = "triton-build.txt"
KEPT_SUFFIXES = (".cubin", ".json")  # the binary, its metadata and the group file


def build_fingerprint() -> str:
    """This machine's Triton build as its cache keys see it: version, sources, libtriton, ptxas."""
    import triton
    from triton.backends.nvidia.compiler import get_ptxas_version
    from triton.runtime.cache import triton_key

    build = hashlib.sha256(triton_key().encode()).hexdigest()[:16]
    ptxas = hashlib.sha256(get_ptxas_version(90).encode()).hexdigest()[:16]
    return f"triton {triton.__version__} build {build} ptxas {ptxas}"


def kernel_groups(cache: Path) -> list[Path]:
    """The group files of the compiled kernels (``__grp__NAME.json``, one per kernel variant)."""
    return sorted(cache.glob("*/__grp__*.json"))


def pack(cache: Path, archive: Path) -> int:
    groups = kernel_groups(cache)
    with tarfile.open(archive, "w:xz") as tar:
        for group in groups:
            for path in sorted(group.parent.iterdir()):
                if path.suffix in KEPT_SUFFIXES:
                    tar.add(path, arcname=f"{path.parent.name}/{path.name}")
        fingerprint = build_fingerprint()
        data = (fingerprint + "\n").encode()
        info = tarfile.TarInfo(FINGERPRINT)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    print(f"{len(groups)} kernels from {cache} -> {archive} ({archive.stat().st_size / 2**20:.1f} MiB); "
          f"{fingerprint}")
    return 0


def unpack(archive: Path, cache: Path) -> int:
    cache = cache.resolve()
    cache.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.isfile() and ".." not in Path(m.name).parts]
        tar.extractall(cache, members=members, filter="data")
    carried = (cache / FINGERPRINT).read_text().strip()
    unpacked = {Path(m.name).parts[0] for m in members}  # the archive's entries, not others already there
    groups = [g for g in kernel_groups(cache) if g.parent.name in unpacked]
    for group in groups:
        # The group names its files by absolute path, the packing machine's: point it here, and
        # drop the files that were not packed (Triton skips a missing one, but say it plainly).
        children = json.loads(group.read_text())["child_paths"]
        kept = {name: str(group.parent / name) for name in children if (group.parent / name).exists()}
        group.write_text(json.dumps({"child_paths": kept}))
    here = build_fingerprint()
    same = "yes" if here == carried else "NO: Triton will find none of them and compile its own"
    print(f"{len(groups)} kernels unpacked into {cache}\n  compiled by: {carried}\n  this machine: {here}\n"
          f"  same Triton build: {same}")
    return 0


def count(cache: Path) -> int:
    print(f"{len(kernel_groups(cache))} compiled kernels in {cache}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("pack", help="archive the compiled kernels of a cache folder")
    p.add_argument("cache", type=Path)
    p.add_argument("archive", type=Path)
    p = commands.add_parser("unpack", help="extract an archive into a cache folder, ready for Triton")
    p.add_argument("archive", type=Path)
    p.add_argument("cache", type=Path)
    p = commands.add_parser("count", help="count the compiled kernels in a cache folder")
    p.add_argument("cache", type=Path)
    args = parser.parse_args(argv)
    if args.command == "pack":
        return pack(args.cache, args.archive)
    if args.command == "unpack":
        return unpack(args.archive, args.cache)
    return count(args.cache)


if __name__ == "__main__":
    sys.exit(main())
