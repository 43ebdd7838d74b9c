"""
Build the embedded training corpus from the running interpreter's standard-library source.

    python -m ledgerlab.domains.ml_training.build_corpus            # writes data/corpus.txt.gz + corpus.json
    python -m ledgerlab.domains.ml_training.build_corpus --check    # rebuild in memory, compare checksums

The corpus is a fixed, sorted list of CPython `Lib/*.py` files (PSF license, redistributable; see data/NOTICE),
concatenated with a one-line header per file and gzip-compressed with a zero timestamp, so the same Python
version always produces byte-identical output. Other machines never rebuild it: they read the shipped file.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import sys
import sysconfig
from pathlib import Path

DATA_DIR = Path(__file__).parent / "data"
CORPUS_FILE = DATA_DIR / "corpus.txt.gz"
META_FILE = DATA_DIR / "corpus.json"

MAX_BYTES = 8_000_000  # raw size cap: about 2 MB compressed
# Tests, vendored packages and machine-generated tables teach a model little about Python.
EXCLUDED_DIRS = {"test", "tests", "idle_test", "site-packages", "__pycache__", "encodings", "pydoc_data"}


# ---------------------------------------------------------------------------------------- selection


def select_files(stdlib: Path) -> list[Path]:
    """Every eligible .py file under `stdlib`, sorted by its POSIX relative path."""
    found = []
    for path in stdlib.rglob("*.py"):
        rel = path.relative_to(stdlib)
        if EXCLUDED_DIRS.intersection(rel.parts[:-1]):
            continue
        found.append(path)
    return sorted(found, key=lambda p: p.relative_to(stdlib).as_posix())


def build(stdlib: Path, max_bytes: int = MAX_BYTES) -> tuple[bytes, list[str]]:
    """The raw corpus bytes and the relative paths included, in order, up to `max_bytes`."""
    chunks: list[bytes] = []
    names: list[str] = []
    size = 0
    for path in select_files(stdlib):
        rel = path.relative_to(stdlib).as_posix()
        text = path.read_bytes().replace(b"\r\n", b"\n")
        chunk = f"# ===== Lib/{rel} =====\n".encode() + text.rstrip(b"\n") + b"\n\n"
        if size + len(chunk) > max_bytes:
            break
        chunks.append(chunk)
        names.append(rel)
        size += len(chunk)
    return b"".join(chunks), names


# ---------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--stdlib", type=Path, default=Path(sysconfig.get_paths()["stdlib"]))
    parser.add_argument("--check", action="store_true", help="compare a rebuild with the shipped checksum")
    args = parser.parse_args(argv)

    raw, names = build(args.stdlib)
    sha = hashlib.sha256(raw).hexdigest()
    if args.check:
        shipped = json.loads(META_FILE.read_text())["sha256"]
        print(f"rebuilt: {sha}\nshipped: {shipped}\n{'identical' if sha == shipped else 'DIFFERENT'}")
        return 0 if sha == shipped else 1

    DATA_DIR.mkdir(parents=True, exist_ok=True)
    CORPUS_FILE.write_bytes(gzip.compress(raw, compresslevel=9, mtime=0))
    meta = {
        "name": "cpython-stdlib",
        "source": f"CPython {sys.version.split()[0]} standard library (Lib/*.py), PSF License",
        "sha256": sha,
        "bytes": len(raw),
        "files": len(names),
        "first_file": names[0],
        "last_file": names[-1],
        "excluded_dirs": sorted(EXCLUDED_DIRS),
        "gzip_sha256": hashlib.sha256(CORPUS_FILE.read_bytes()).hexdigest(),
    }
    META_FILE.write_text(json.dumps(meta, indent=2) + "\n")
    print(f"wrote {CORPUS_FILE} ({CORPUS_FILE.stat().st_size:,} bytes gz, {len(raw):,} raw, {len(names)} files)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
