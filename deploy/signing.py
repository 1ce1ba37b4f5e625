"""Signed bundles: Ed25519 (the ``cryptography`` package, extra ``edgecnn[sign]``).

The signature covers the manifest bytes, and the manifest holds every model file's sha256,
so one signature pins the whole bundle: reversed labels or a swapped model with an updated
hash no longer pass. ``Trust`` is the policy: which public keys a bundle must be signed by
(none: signatures are not asked for). ``Bundle.open`` takes one; by default it comes from
``EDGECNN_TRUSTED_KEYS`` (os.pathsep-separated public key files), and the CLI adds
``--trusted-key`` files to it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import BundleError, InputError

SIGNATURE = "edgecnn.json.sig"
SIGNATURE_FORMAT = "edgecnn-signature"
TRUST_ENV = "EDGECNN_TRUSTED_KEYS"
MAX_KEY_BYTES = 64 << 10


def _crypto():
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise InputError("bundle signatures need the 'cryptography' package: "
                         "pip install 'edgecnn[sign]'") from None
    return ed25519, serialization


def fingerprint(public_key) -> str:
    """Short id of a public key: the first 16 hex digits of the sha256 of its raw bytes."""
    _, serialization = _crypto()
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _read_key_file(path: Path, what: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_KEY_BYTES + 1)
    except OSError as exc:
        raise InputError(f"{what} {path} cannot be read: {exc.strerror}") from None
    if len(data) > MAX_KEY_BYTES:
        raise InputError(f"{what} {path} is not a key file (over {MAX_KEY_BYTES} bytes)")
    return data


def load_public_key(path: Path):
    ed25519, serialization = _crypto()
    data = _read_key_file(path, "trusted key")
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        key = None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise InputError(f"trusted key {path} is not an Ed25519 public key in PEM form "
                         "(made by 'edgecnn keys generate')")
    return key


def load_private_key(path: Path):
    ed25519, serialization = _crypto()
    data = _read_key_file(path, "signing key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        key = None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise InputError(f"signing key {path} is not an unencrypted Ed25519 private key in "
                         "PEM form (made by 'edgecnn keys generate')")
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:
        mode = 0
    if mode & 0o077:
        logging.getLogger(__name__).warning(
            "warning: signing key %s can be read by others (mode %o): anyone who can read "
            "it can sign bundles; chmod 600 it", path, mode)
    return key


@dataclass(frozen=True)
class Trust:
    """The public keys a bundle must be signed by; no keys: signatures are not required."""

    keys: tuple[Path, ...] = ()

    @classmethod
    def resolve(cls, keys=(), environ=None) -> "Trust":
        """``keys`` plus the files listed in EDGECNN_TRUSTED_KEYS."""
        environ = os.environ if environ is None else environ
        listed = [p for p in environ.get(TRUST_ENV, "").split(os.pathsep) if p.strip()]
        if any(not str(key).strip() for key in keys):
            raise InputError("--trusted-key needs a public key file; found an empty path")
        return cls(tuple(Path(p) for p in (*keys, *listed)))

    @property
    def required(self) -> bool:
        return bool(self.keys)

    def check(self, where: Path, manifest: bytes, signature: bytes | None) -> str | None:
        """The fingerprint of the trusted key that signed ``manifest``; None when nothing
        is required. A BundleError when a signature is required and missing or wrong."""
        if not self.required:
            return None
        trusted = {fingerprint(key): key for key in map(load_public_key, self.keys)}
        if signature is None:
            raise BundleError(f"bundle {where} is not signed ({SIGNATURE} missing) and "
                              f"trusted keys are set; refusing an unsigned bundle (sign it "
                              "with 'edgecnn sign')")
        key_id, blob = _parse_signature(signature, where)
        if key_id not in trusted:
            raise BundleError(f"bundle {where} is signed by key {key_id}, which is not a "
                              f"trusted key (trusted: {', '.join(trusted)}); refused")
        from cryptography.exceptions import InvalidSignature

        try:
            trusted[key_id].verify(blob, manifest)
        except InvalidSignature:
            raise BundleError(f"bundle {where}: the signature does not verify against "
                              "edgecnn.json (the manifest or the signature changed after "
                              "signing, or the signature is another bundle's); refused") \
                from None
        return key_id


def _parse_signature(data: bytes, where: Path) -> tuple[str, bytes]:
    from .manifest import parse_json

    doc = parse_json(data, f"signature of bundle {where}")
    bad = BundleError(f"bundle {where}: {SIGNATURE} is not an edgecnn Ed25519 signature")
    if not isinstance(doc, dict) or doc.get("format") != SIGNATURE_FORMAT or \
            doc.get("algorithm") != "ed25519" or not isinstance(doc.get("key"), str) or \
            not isinstance(doc.get("signature"), str):
        raise bad
    try:
        blob = base64.b64decode(doc["signature"], validate=True)
    except ValueError:
        raise bad from None
    if len(blob) != 64 or not re.fullmatch(r"[0-9a-f]{16}", doc["key"]):
        raise bad   # a key id is 16 hex digits: nothing else is ever echoed
    return doc["key"], blob


def signature_document(private_key, manifest: bytes) -> bytes:
    doc = {"format": SIGNATURE_FORMAT, "version": 1, "algorithm": "ed25519",
           "key": fingerprint(private_key.public_key()), "signed": "edgecnn.json",
           "signature": base64.b64encode(private_key.sign(manifest)).decode("ascii")}
    return (json.dumps(doc, indent=2) + "\n").encode("utf-8")


def generate_keys(out_dir: str | os.PathLike, name: str = "edgecnn") -> tuple[Path, Path, str]:
    """Write ``NAME.key`` (mode 0600) and ``NAME.pub`` into ``out_dir``; never overwrite."""
    ed25519, serialization = _crypto()
    out = Path(out_dir)
    if not name or "/" in name or name.startswith("."):
        raise InputError(f"key name must be a plain file name; found {name!r}")
    key_path, pub_path = out / f"{name}.key", out / f"{name}.pub"
    for path in (key_path, pub_path):
        if path.exists() or path.is_symlink():
            raise InputError(f"{path} exists; refusing to overwrite a key (choose another "
                             "--name or --out)")
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    private = ed25519.Ed25519PrivateKey.generate()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    pub = private.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    _write_new(key_path, pem, 0o600)
    _write_new(pub_path, pub, 0o644)
    return key_path, pub_path, fingerprint(private.public_key())


def _write_new(path: Path, data: bytes, mode: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise InputError(f"{path} exists; refusing to overwrite a key") from None
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, mode)  # the umask must not widen or narrow what we asked for


def sign_bundle(bundle, key: str | os.PathLike) -> tuple[Path, str]:
    """Sign ``bundle``'s manifest after checking every file's hash; (signature path, key id)."""
    from .bundle import Bundle

    private = load_private_key(Path(key))
    opened = Bundle.open(bundle, trust=Trust())
    from .bundle import SHIPPED_DIR

    if opened.path.resolve().parent == SHIPPED_DIR:
        raise InputError(f"{opened.path} is a bundle shipped inside the edgecnn package: "
                         "sign a copy of it (cp -r), not the installed files")
    for fmt in opened.formats:  # sign only what verifies today
        opened.file(fmt)
    import tempfile

    target = opened.path / SIGNATURE
    staged = None
    try:
        fd, staged = tempfile.mkstemp(prefix=f".{SIGNATURE}.", dir=opened.path)
        with os.fdopen(fd, "wb") as handle:
            handle.write(signature_document(private, opened.raw))
        os.chmod(staged, 0o644)
        os.replace(staged, target)  # replaces a link itself, never writes through it
    except OSError as exc:
        if staged:
            Path(staged).unlink(missing_ok=True)
        raise InputError(f"cannot write {target}: {exc.strerror}") from None
    return target, fingerprint(private.public_key())
