"""Reading a self-describing bundle: ``BUNDLE_DIR/edgecnn.json`` plus model files.

The manifest (layout and its one validating loader: ``edgecnn.deploy.manifest``) holds the
InputSpec, the labels and, per model file, its format, sha256 and tensors. The runtime needs
nothing else. A bundle is confined to its folder: a name with ``..``, an absolute path, or a
link that leads out (the manifest included) is refused before anything is opened, and no
error shows anything of an outside file. Model hashes are checked on use (engines load the
very bytes that were hashed); under a ``Trust`` with keys, the manifest's Ed25519 signature
is checked at open (``edgecnn.deploy.signing``).
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import BundleError
from .formats import preferred
from .manifest import (
    BUNDLE_FORMAT,
    BUNDLE_VERSION,
    MAX_JSON_BYTES,
    FileEntry,
    parse_json,
    parse_manifest,
)
from .signing import SIGNATURE, Trust
from .spec import InputSpec

MANIFEST = "edgecnn.json"
SHIPPED_DIR = Path(__file__).resolve().parent / "bundles"
MAX_SIGNATURE_BYTES = 64 << 10


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def shipped_bundles() -> dict[str, Path]:
    """Bundles installed with the package, by name (``neu``, ``cwru``, ``mnist``)."""
    if not SHIPPED_DIR.is_dir():
        return {}
    return {p.name: p for p in sorted(SHIPPED_DIR.iterdir()) if (p / MANIFEST).is_file()}


def resolve_bundle_path(name_or_path: str | Path) -> Path:
    """A bundle directory from a shipped bundle name or a path.

    A bare name (``neu``, no path separator) given as a string is the shipped bundle even
    when a folder of that name is in the working directory; ``./neu`` is that folder.
    """
    text = str(name_or_path)
    shipped = shipped_bundles()
    bare = isinstance(name_or_path, str) and text not in (".", "..") and \
        "/" not in text and not (os.altsep and os.altsep in text) and os.sep not in text
    if bare and text in shipped:
        return shipped[text]
    path = Path(name_or_path)
    if path.exists():
        return path
    names = ", ".join(shipped) or "none installed"
    if not bare:        # a path (./neu): the folder is meant, not a shipped bundle
        raise BundleError(f"no bundle at {text}: the folder does not exist (shipped "
                          f"bundles, by bare name: {names})")
    raise BundleError(f"no bundle at {text} and no shipped bundle of that name "
                      f"(shipped bundles: {names})")


def inside(folder: Path, name: str, key: str) -> Path:
    """``folder/name`` resolved, refused when a link leads it out of ``folder``.

    ``name`` has passed the manifest's lexical check (relative, no ``..``); only the
    path is resolved, nothing outside is opened or stat-ed.
    """
    root = Path(os.path.realpath(folder))
    real = Path(os.path.realpath(root / name))
    if not real.is_relative_to(root) or real == root:
        raise BundleError(f"{key}: {name!r} is a link that leads out of the bundle folder "
                          f"{folder}; refused")
    return real


def not_a_file(path: Path) -> str | None:
    """Why ``path`` is not a regular file to read ("is missing", "is a directory", ...),
    or None when it is one: a FIFO or a device is named, not taken for a missing file."""
    if path.is_file():
        return None
    if not path.exists():
        return "is missing"
    kind = ("a directory" if path.is_dir() else "a FIFO" if path.is_fifo()
            else "a socket" if path.is_socket() else "a device" if path.is_char_device()
            or path.is_block_device() else "not a regular file")
    return f"is {kind}, not a regular file"


def read_inside(folder: Path, name: str, key: str, limit: int) -> bytes | None:
    """The bytes of a small regular file inside ``folder``; None when there is none."""
    path = inside(folder, name, key)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise BundleError(f"{key}: {folder / name} cannot be read: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise BundleError(f"{key}: {folder / name} is not a regular file")
    if info.st_size > limit:
        raise BundleError(f"{key}: {folder / name} is {info.st_size} bytes; at most {limit} "
                          "are read")
    try:
        with open(path, "rb") as handle:
            return handle.read(limit + 1)
    except OSError as exc:
        raise BundleError(f"{key}: {folder / name} cannot be read: {exc.strerror}") from None


@dataclass(frozen=True)
class Bundle:
    """An opened bundle: manifest read, validated and (under trust) signature-checked;
    file hashes checked on use."""

    path: Path
    manifest: dict[str, Any]
    spec: InputSpec
    files: dict[str, FileEntry] = field(default_factory=dict)
    raw: bytes = field(default=b"", repr=False)      # the manifest bytes, as signed
    signed_by: str | None = None                     # fingerprint of the trusted signer

    @classmethod
    def open(cls, name_or_path: str | Path, trust: Trust | None = None) -> "Bundle":
        """Open a bundle folder, its manifest file, or a shipped bundle by name.

        ``trust``: the keys it must be signed by; default ``Trust.resolve()`` (the keys in
        EDGECNN_TRUSTED_KEYS, none when it is unset).
        """
        trust = Trust.resolve() if trust is None else trust
        given = resolve_bundle_path(name_or_path)
        folder, name = (given, MANIFEST) if given.is_dir() else (given.parent, given.name)
        raw = read_inside(folder, name, MANIFEST, MAX_JSON_BYTES)
        if raw is None:
            raise BundleError(f"{given} is not a bundle: expected {MANIFEST} inside it")
        signed_by = None
        if trust.required:  # before the untrusted JSON is parsed
            signed_by = trust.check(folder, raw, read_inside(folder, SIGNATURE, SIGNATURE,
                                                             MAX_SIGNATURE_BYTES))
        manifest = parse_manifest(raw, str(folder / name))
        return cls(path=folder, manifest=manifest.data, spec=manifest.spec,
                   files=manifest.files, raw=raw, signed_by=signed_by)

    @property
    def labels(self) -> tuple[str, ...]:
        return self.spec.labels

    @property
    def formats(self) -> list[str]:
        return list(self.files)

    def default_format(self) -> str:
        # export records its choice ("default_format": the preferred format that held
        # parity); older bundles fall back to the runtime's preference order.
        chosen = self.manifest.get("default_format")
        if chosen in self.files:
            return chosen
        return preferred(self.files)[0]

    def file_entry(self, fmt: str | None = None) -> FileEntry:
        fmt = fmt or self.default_format()
        if fmt not in self.files:
            raise BundleError(f"bundle {self.path} has no {fmt!r} model; "
                              f"it has: {', '.join(self.files)}")
        return self.files[fmt]

    def entry(self, fmt: str | None = None) -> dict[str, Any]:
        """The manifest's JSON entry of a format (``file_entry`` is the typed one)."""
        return self.manifest["files"][self.file_entry(fmt).format]

    def file(self, fmt: str | None = None) -> Path:
        """Path of a model file after checking it lies inside the bundle and matches the
        manifest's sha256."""
        path, entry = self._model_path(fmt)
        self._check_digest(entry, sha256_file(path))
        return path

    def model_bytes(self, fmt: str | None = None) -> bytes:
        """A model file's bytes, read once and checked: what runs is what was hashed, even
        if the file is replaced after the check."""
        path, entry = self._model_path(fmt)
        data = path.read_bytes()
        self._check_digest(entry, hashlib.sha256(data).hexdigest())
        return data

    def _model_path(self, fmt: str | None) -> tuple[Path, FileEntry]:
        entry = self.file_entry(fmt)
        path = inside(self.path, entry.file, f"files.{entry.format}.file")
        if (why := not_a_file(path)) is not None:
            raise BundleError(f"bundle file {self.path / entry.file} {why}")
        size = path.stat().st_size
        if entry.size is not None and size != entry.size:   # before reading gigabytes
            raise BundleError(f"bundle file {self.path / entry.file} does not match its "
                              f"manifest ({size} bytes, the manifest says {entry.size}); "
                              "refusing a modified or corrupted model")
        return path, entry

    def _check_digest(self, entry: FileEntry, digest: str) -> None:
        if digest != entry.sha256:
            # (not the sha256 found: the file may be a hard link to one outside the bundle)
            raise BundleError(f"bundle file {self.path / entry.file} does not match its "
                              f"manifest (sha256 expected {entry.sha256}); refusing a "
                              "modified or corrupted model")


def read_json(path: Path, what: str) -> Any:
    """A small JSON file (model or bundle manifest) with the manifest's size/depth limits."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_JSON_BYTES + 1)
    except FileNotFoundError:
        raise BundleError(f"{what} {path} not found") from None
    except OSError as exc:
        raise BundleError(f"{what} {path} is not readable JSON: {exc.strerror}") from None
    return parse_json(data, f"{what} {path}")


__all__ = ["BUNDLE_FORMAT", "BUNDLE_VERSION", "MANIFEST", "Bundle", "FileEntry", "Trust",
           "read_json", "resolve_bundle_path", "sha256_file", "shipped_bundles"]
