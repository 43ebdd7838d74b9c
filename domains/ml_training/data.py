"""
Datasets of the ml_training domain: the embedded corpus, a user's text, and TinyStories (downloaded on request).

    python -m ledgerlab.domains.ml_training.data download-tinystories [--split valid|train]
    python -m ledgerlab.domains.ml_training.data info [DATASET]

Every dataset resolves to one file the harness reads (raw bytes or gzip) plus the SHA-256 of its text, which
the campaign records so that results are only compared on the same data. Nothing here imports torch.
`dataset` values:
    None / "stdlib"    the shipped CPython standard-library corpus (data/corpus.txt.gz, offline, ~2 MB)
    "tinystories"      TinyStories, once downloaded into the cache (see download_tinystories)
    a file path        a text file (UTF-8 or any bytes; .gz allowed)
    a folder path      its files, sorted by relative path, concatenated into one cached file
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import shutil
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ledgerlab.errors import ConfigError

HERE = Path(__file__).parent
BUILTIN_CORPUS = HERE / "data" / "corpus.txt.gz"
BUILTIN_META = HERE / "data" / "corpus.json"
TINYSTORIES_URLS = {
    "valid": "https://huggingface.co/datasets/roneneldan/TinyStories/resolve/main/TinyStoriesV2-GPT4-valid.txt",
    "train": "https://huggingface.co/datasets/roneneldan/TinyStories/resolve/main/TinyStoriesV2-GPT4-train.txt",
}
STORY_SEPARATOR = "<|endoftext|>"


@dataclass(frozen=True)
class Dataset:
    name: str
    path: Path  # the file the harness reads
    sha256: str  # of the (decompressed) bytes


def cache_dir() -> Path:
    """$LEDGERLAB_CACHE, else $XDG_CACHE_HOME/ledgerlab, else ~/.cache/ledgerlab."""
    if os.environ.get("LEDGERLAB_CACHE"):
        return Path(os.environ["LEDGERLAB_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ledgerlab"


def read_bytes(path: Path) -> bytes:
    """A file's bytes, decompressed when it is gzip (the harness reads files the same way)."""
    raw = Path(path).read_bytes()
    return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw


def sha256_of(path: Path) -> str:
    return hashlib.sha256(read_bytes(path)).hexdigest()


# ------------------------------------------------------------------------------------------- resolving


def resolve_dataset(spec: str | os.PathLike | None) -> Dataset:
    """The Dataset for a `dataset` option value (see the module docstring)."""
    if spec is None or str(spec) in ("", "stdlib", "builtin"):
        meta = json.loads(BUILTIN_META.read_text())
        return Dataset("stdlib", BUILTIN_CORPUS, meta["sha256"])
    if str(spec) in ("tinystories", "tinystories-valid", "tinystories-train"):
        split = "train" if str(spec).endswith("train") else "valid"
        path = tinystories_path(split)
        if not path.exists():
            raise ConfigError(f"dataset {spec!r} is not downloaded yet: run `python -m "
                              f"ledgerlab.domains.ml_training.data download-tinystories --split {split}`")
        return Dataset(f"tinystories-{split}", path, sha256_of(path))
    path = Path(spec).expanduser().resolve()
    if path.is_file():
        if path.stat().st_size < 4096:
            raise ConfigError(f"dataset {path} is too small to split into training and validation text")
        return Dataset(path.name, path, sha256_of(path))
    if path.is_dir():
        return _folder_dataset(path)
    raise ConfigError(f"dataset {spec!r}: no such file or folder (or use 'stdlib' or 'tinystories')")


def _folder_dataset(folder: Path) -> Dataset:
    parts = []
    for file in sorted((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.relative_to(folder).as_posix()):
        if any(part.startswith(".") for part in file.relative_to(folder).parts):
            continue
        data = read_bytes(file)
        if b"\x00" in data[:4096]:  # binary, not text
            continue
        parts.append(data.rstrip(b"\n") + b"\n\n")
    text = b"".join(parts)
    if len(text) < 4096:
        raise ConfigError(f"dataset folder {folder} holds too little text ({len(text)} bytes)")
    sha = hashlib.sha256(text).hexdigest()
    out = cache_dir() / "datasets" / f"folder-{sha[:16]}.txt"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".part")
        tmp.write_bytes(text)
        tmp.replace(out)
    return Dataset(folder.name, out, sha)


# ------------------------------------------------------------------------------------------- TinyStories


def tinystories_path(split: str = "valid") -> Path:
    return cache_dir() / "datasets" / f"tinystories-{split}.txt"


def prepare_tinystories(raw_path: Path, out_path: Path) -> Path:
    """Turn a TinyStories text file into plain text: stories separated by a blank line, UTF-8."""
    text = Path(raw_path).read_bytes().decode("utf-8", "replace")
    stories = (story.strip() for story in text.split(STORY_SEPARATOR))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(".part")
    tmp.write_text("\n\n".join(s for s in stories if s) + "\n", encoding="utf-8")
    tmp.replace(out_path)
    return out_path


def download_tinystories(split: str = "valid", url: str | None = None) -> Path:
    """Download TinyStories (valid ≈ 22 MB, train ≈ 2.2 GB) into the cache once; needs a network."""
    out = tinystories_path(split)
    if out.exists():
        return out
    url = url or TINYSTORIES_URLS[split]
    raw = out.with_name(out.name + ".download")
    raw.parent.mkdir(parents=True, exist_ok=True)
    with urllib.request.urlopen(url, timeout=60) as response, open(raw, "wb") as f:  # noqa: S310 - fixed URL
        shutil.copyfileobj(response, f)
    prepare_tinystories(raw, out)
    raw.unlink()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="ml_training datasets")
    sub = parser.add_subparsers(dest="command", required=True)
    dl = sub.add_parser("download-tinystories", help="download TinyStories into the cache")
    dl.add_argument("--split", choices=sorted(TINYSTORIES_URLS), default="valid")
    info = sub.add_parser("info", help="where a dataset lives and its checksum")
    info.add_argument("dataset", nargs="?", default=None)
    args = parser.parse_args(argv)
    if args.command == "download-tinystories":
        print(download_tinystories(args.split))
    else:
        ds = resolve_dataset(args.dataset)
        print(f"name: {ds.name}\npath: {ds.path}\nsha256: {ds.sha256}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
