"""Signed bundles: `edgecnn keys generate`, `edgecnn sign`, and --trusted-key /
EDGECNN_TRUSTED_KEYS on every command that opens a bundle. Hashes catch corruption; the
signature catches tampering (reversed labels, a swapped model with an updated hash)."""

from __future__ import annotations

import os
import shutil
import stat

import pytest

from bundle_helpers import CALIBRATION, RECORDING, assert_clean_refusal, copy_shipped, edit, run_cli
from edgecnn.deploy.bundle import Bundle, sha256_file
from edgecnn.deploy.engine import open_engine
from edgecnn.deploy.errors import BundleError, InputError
from edgecnn.deploy.signing import SIGNATURE, TRUST_ENV, Trust, generate_keys, sign_bundle

pytest.importorskip("cryptography", reason="signed bundles need edgecnn[sign] (cryptography)")


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    root = tmp_path_factory.mktemp("keys")
    proc = run_cli("keys", "generate", "--out", root / "plant", "--name", "line1")
    assert proc.returncode == 0, proc.stderr
    other = generate_keys(root / "other")
    return root / "plant" / "line1.key", root / "plant" / "line1.pub", other[1]


@pytest.fixture()
def signed(tmp_path, keys):
    bundle = copy_shipped("cwru", tmp_path / "signed bundle")
    proc = run_cli("sign", bundle, "--key", keys[0])
    assert proc.returncode == 0, proc.stderr
    assert "signed with key" in proc.stdout and (bundle / SIGNATURE).is_file()
    return bundle


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k != TRUST_ENV}
    env.update(extra)
    return env


def test_keys_generate_writes_a_private_key_only_we_can_read_and_never_overwrites(keys):
    private, public, _ = keys
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in private.read_bytes() and b"PUBLIC KEY" in public.read_bytes()
    proc = run_cli("keys", "generate", "--out", private.parent, "--name", "line1")
    assert_clean_refusal(proc, "exists; refusing to overwrite")
    with pytest.raises(InputError, match="refusing to overwrite"):
        generate_keys(private.parent, "line1")


def test_a_good_signature_is_accepted_everywhere(signed, keys):
    bundle = Bundle.open(signed, Trust((keys[1],)))
    assert bundle.signed_by is not None
    open_engine(bundle, "onnx-int8")
    proc = run_cli("run", "vibration", signed, "--source", RECORDING, "--max-windows", "3",
                   "--quiet", "--trusted-key", keys[1], env=_env())
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("run", "vibration", signed, "--source", RECORDING, "--max-windows", "3",
                   "--quiet", env=_env(**{TRUST_ENV: f"{keys[2]}{os.pathsep}{keys[1]}"}))
    assert proc.returncode == 0, proc.stderr


def test_unsigned_bundles_are_refused_under_trust_and_fine_without(tmp_path, keys):
    plain = copy_shipped("cwru", tmp_path / "plain")
    assert Bundle.open(plain, Trust()).signed_by is None
    with pytest.raises(BundleError, match="is not signed .* refusing an unsigned bundle"):
        Bundle.open(plain, Trust((keys[1],)))
    for args in (["eval", plain, "--data", CALIBRATION / "cwru"],
                 ["parity", plain, "--data", CALIBRATION / "cwru"],
                 ["bench", plain, "--no-keras", "--iterations", "1"],
                 ["run", "vibration", plain, "--source", RECORDING]):
        proc = run_cli(*args, "--trusted-key", keys[1], env=_env())
        assert_clean_refusal(proc, "is not signed")


def test_a_bundle_signed_by_another_key_is_refused(signed, keys):
    with pytest.raises(BundleError, match="which is not a trusted key"):
        Bundle.open(signed, Trust((keys[2],)))
    proc = run_cli("eval", signed, "--data", CALIBRATION / "cwru", "--trusted-key", keys[2],
                   env=_env())
    assert_clean_refusal(proc, "not a trusted key")


def test_reversed_labels_are_caught_by_the_signature(signed, keys):
    def reverse(data):
        data["labels"] = data["spec"]["labels"] = list(reversed(data["labels"]))
    edit(signed, reverse)
    Bundle.open(signed, Trust())          # valid JSON, right sizes: only the signature knows
    with pytest.raises(BundleError, match="signature does not verify against edgecnn.json"):
        Bundle.open(signed, Trust((keys[1],)))


def test_a_swapped_model_with_an_updated_hash_is_caught_only_by_the_signature(signed, keys):
    shutil.copy(signed / "model.onnx", signed / "model.int8.onnx")   # another valid model

    def rehash(data):
        data["files"]["onnx-int8"].update(sha256=sha256_file(signed / "model.int8.onnx"),
                                          size=(signed / "model.int8.onnx").stat().st_size)
    edit(signed, rehash)
    open_engine(Bundle.open(signed, Trust()), "onnx-int8")   # the hashes agree
    proc = run_cli("run", "vibration", signed, "--source", RECORDING, "--max-windows", "2",
                   env=_env(**{TRUST_ENV: str(keys[1])}))
    assert_clean_refusal(proc, "signature does not verify")


def test_the_environment_variable_is_the_default_trust(signed, tmp_path, keys, monkeypatch):
    plain = copy_shipped("cwru", tmp_path / "plain")
    monkeypatch.setenv(TRUST_ENV, str(keys[1]))
    assert Bundle.open(signed).signed_by is not None
    with pytest.raises(BundleError, match="is not signed"):
        Bundle.open(plain)
    with pytest.raises(BundleError, match="is not signed"):
        open_engine(str(plain))
    monkeypatch.setenv(TRUST_ENV, str(tmp_path / "missing.pub"))
    with pytest.raises(InputError, match="trusted key .*missing.pub cannot be read"):
        Bundle.open(signed)


def test_broken_signature_files_and_keys_are_clean_errors(signed, keys, tmp_path):
    trust = Trust((keys[1],))
    (signed / SIGNATURE).write_text('{"format": "edgecnn-signature", "algorithm": "ed25519", '
                                    '"key": "x", "signature": "###"}')
    with pytest.raises(BundleError, match="is not an edgecnn Ed25519 signature"):
        Bundle.open(signed, trust)
    (signed / SIGNATURE).write_text("[" * 1000)
    with pytest.raises(BundleError, match="levels deep"):
        Bundle.open(signed, trust)
    with pytest.raises(InputError, match="is not an Ed25519 public key"):
        Bundle.open(signed, Trust((keys[0],)))          # the private key by mistake
    with pytest.raises(InputError, match="is not an unencrypted Ed25519 private key"):
        sign_bundle(signed, keys[1])
    (signed / SIGNATURE).unlink()
    (signed / SIGNATURE).symlink_to(tmp_path / "elsewhere.sig")
    with pytest.raises(BundleError, match="edgecnn.json.sig.*leads out of the bundle"):
        Bundle.open(signed, trust)


def test_signing_refuses_a_bundle_whose_files_do_not_verify(tmp_path, keys):
    bundle = copy_shipped("cwru", tmp_path / "corrupt")
    with open(bundle / "model.tflite", "r+b") as handle:
        handle.seek(100)
        handle.write(b"\x00\x01\x02")
    with pytest.raises(BundleError, match="does not match its manifest"):
        sign_bundle(bundle, keys[0])
    assert not (bundle / SIGNATURE).exists()


def test_without_cryptography_one_line_names_the_extra(tmp_path):
    import subprocess
    import sys

    code = ("import sys; sys.modules['cryptography'] = None\n"
            "from edgecnn.cli import main; main()")
    proc = subprocess.run([sys.executable, "-c", code, "keys", "generate", "--out",
                           str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert_clean_refusal(proc, "pip install 'edgecnn[sign]'")


def test_a_new_export_over_a_signed_bundle_drops_the_old_signature(signed, tmp_path):
    from edgecnn.export.exporter import _replace_bundle

    stage = copy_shipped("mnist", tmp_path / "stage")
    _replace_bundle(stage, signed)
    assert not (signed / SIGNATURE).exists()
    assert Bundle.open(signed, Trust()).labels == Bundle.open("mnist").labels


def test_a_service_configs_trusted_key_is_taken_from_the_configs_folder(signed, keys,
                                                                       tmp_path):
    folder = tmp_path / "etc"
    folder.mkdir()
    shutil.copy(keys[1], folder / "line1.pub")
    config = folder / "line.toml"
    config.write_text(f'[run]\ntrusted_key = ["line1.pub"]\n\n[[vibration]]\nname = "pump"\n'
                      f'bundle = "{signed}"\nsource = "{RECORDING}"\n')
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    proc = run_cli("serve", "--check", config, cwd=elsewhere, env=_env())
    assert proc.returncode == 0, proc.stderr
    (folder / "line1.pub").unlink()
    proc = run_cli("serve", "--check", config, cwd=elsewhere, env=_env())
    assert proc.returncode == 2 and "[run] key 'trusted_key'" in proc.stderr, proc.stderr


def test_under_trust_an_unsigned_model_directory_is_refused_by_eval(keys, tmp_path):
    import json

    model = tmp_path / "model"
    model.mkdir()
    (model / "edgecnn.json").write_text(json.dumps({"format": "edgecnn-model"}))
    proc = run_cli("eval", model, "--data", CALIBRATION / "cwru", "--trusted-key", keys[1],
                   env=_env())
    assert_clean_refusal(proc, "is a model directory, which is never signed")


def test_a_forged_key_id_is_never_echoed_and_loose_keys_are_warned(signed, keys, tmp_path,
                                                                  caplog):
    import json
    import logging

    sig = json.loads((signed / SIGNATURE).read_text())
    sig["key"] = "abc\nerror: FAKE LINE" + "Z" * 3000
    (signed / SIGNATURE).write_text(json.dumps(sig))
    with pytest.raises(BundleError) as info:
        Bundle.open(signed, Trust((keys[1],)))
    assert "FAKE" not in str(info.value) and "not an edgecnn Ed25519 signature" in str(info.value)
    with pytest.raises(InputError, match="needs a public key file; found an empty path"):
        Trust.resolve(("",), environ={})
    loose = tmp_path / "loose.key"
    shutil.copy(keys[0], loose)
    loose.chmod(0o666)
    with caplog.at_level(logging.WARNING):
        sign_bundle(signed, loose)
    assert "can be read by others (mode 666)" in caplog.text


def test_a_shipped_bundle_is_signed_as_a_copy_not_in_the_package(keys):
    proc = run_cli("sign", "cwru", "--key", keys[0])
    assert_clean_refusal(proc, "shipped inside the edgecnn package: sign a copy of it")
