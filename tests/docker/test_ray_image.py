"""The Ray image's EFA installer check, run for real: the Dockerfile's own gpg commands accept a tarball
signed by the key whose fingerprint is pinned, and refuse another key or a changed tarball.

No Docker engine here, so the commands are taken from the Dockerfile's RUN step and run with bash against a
key, tarball and signature made by this test (the download steps are left out).
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import REPO

DOCKERFILE = REPO / "docker" / "ray" / "Dockerfile"
VERSION = "9.9.9"


def _run_steps() -> list[str]:
    """The `&&` steps of the RUN instruction that installs EFA, without its downloads."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    (run,) = [line for line in text.splitlines() if line.startswith("RUN ") and "efa_installer.sh" in line]
    steps = [step.strip() for step in run.removeprefix("RUN ").split("&&")]
    return [step for step in steps if not step.startswith(("curl ", "cd ", "./efa_installer.sh", "tar "))]


def _pinned_fingerprint() -> str:
    return re.search(r"^ARG EFA_KEY_FINGERPRINT=([0-9A-F]{40})$", DOCKERFILE.read_text(), re.M).group(1)


def _gpg(home: Path, *args: str) -> str:
    env = {**os.environ, "GNUPGHOME": str(home)}
    done = subprocess.run(["gpg", "--batch", *args], env=env, capture_output=True, text=True, check=True)
    return done.stdout


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A directory with a key file, a tarball and its detached signature, as efa-installer.amazonaws.com
    serves them, and the signing key's fingerprint."""
    if shutil.which("gpg") is None:
        pytest.fail("gpg is missing (Debian: apt-get install gnupg)")
    home, work = tmp_path_factory.mktemp("gnupg"), tmp_path_factory.mktemp("efa")
    home.chmod(0o700)
    _gpg(
        home, "--passphrase", "", "--quick-gen-key", "Test EFA <efa@example.com>", "ed25519", "sign", "never"
    )
    fingerprint = re.search(r"^fpr:{9}([0-9A-F]{40}):", _gpg(home, "--with-colons", "--fingerprint"), re.M)
    tarball = work / f"aws-efa-installer-{VERSION}.tar.gz"
    tarball.write_bytes(b"not really a tarball")
    _gpg(home, "--armor", "--output", str(work / "aws-efa-installer.key"), "--export")
    _gpg(home, "--output", f"{tarball}.sig", "--detach-sign", str(tarball))
    return work, fingerprint.group(1)


@pytest.fixture(scope="module")
def second_key_signs_a_tampered_tarball(
    signed: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str]:
    """The attack: the served key file holds the pinned key *and* another one, and the other key signed a
    changed tarball. Returns that directory and the pinned key's fingerprint."""
    work, pinned = signed
    home, attack = tmp_path_factory.mktemp("gnupg-other"), tmp_path_factory.mktemp("efa-attack")
    home.chmod(0o700)
    _gpg(home, "--passphrase", "", "--quick-gen-key", "Other <other@example.com>", "ed25519", "sign", "never")
    tarball = attack / f"aws-efa-installer-{VERSION}.tar.gz"
    tarball.write_bytes(b"a tampered tarball")
    _gpg(home, "--import", str(work / "aws-efa-installer.key"))  # both keys in one served file
    _gpg(home, "--armor", "--output", str(attack / "aws-efa-installer.key"), "--export")
    other = re.findall(r"^fpr:{9}([0-9A-F]{40}):", _gpg(home, "--with-colons", "-k"), re.M)
    (signer,) = [fpr for fpr in other if fpr != pinned]
    _gpg(home, "--local-user", signer, "--output", f"{tarball}.sig", "--detach-sign", str(tarball))
    return attack, pinned


def _check(work: Path, fingerprint: str) -> subprocess.CompletedProcess:
    script = " && ".join(_run_steps())
    env = {**os.environ, "EFA_INSTALLER_VERSION": VERSION, "EFA_KEY_FINGERPRINT": fingerprint}
    return subprocess.run(
        ["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True, check=False
    )


def test_the_dockerfile_pins_the_fingerprint_aws_publishes() -> None:
    # EC2 user guide, "Get started with EFA and NCCL": 4E90 91BC BB97 A96B 26B1 5E59 A054 80B1 DD2D 3CCC.
    assert _pinned_fingerprint() == "4E9091BCBB97A96B26B15E59A05480B1DD2D3CCC"


def test_a_tarball_signed_by_the_pinned_key_passes(signed, tmp_path) -> None:
    work, fingerprint = signed
    copy = shutil.copytree(work, tmp_path / "ok")
    done = _check(copy, fingerprint)
    assert done.returncode == 0, done.stderr


def test_another_key_is_refused_even_when_it_signed_the_tarball(signed, tmp_path) -> None:
    work, _ = signed
    copy = shutil.copytree(work, tmp_path / "other-key")
    done = _check(copy, _pinned_fingerprint())
    # gpg finds the signature good (its key was served beside it); no VALIDSIG names the pinned key.
    assert done.returncode != 0 and "Good signature" in done.stderr


def test_a_changed_tarball_is_refused(signed, tmp_path) -> None:
    work, fingerprint = signed
    copy = shutil.copytree(work, tmp_path / "changed")
    (copy / f"aws-efa-installer-{VERSION}.tar.gz").write_bytes(b"something else")
    done = _check(copy, fingerprint)
    assert done.returncode != 0 and "BAD signature" in done.stderr


def test_a_second_key_in_the_served_file_cannot_sign_a_tampered_tarball(
    second_key_signs_a_tampered_tarball,
) -> None:
    work, pinned = second_key_signs_a_tampered_tarball
    done = _check(work, pinned)
    # gpg itself calls the signature good (the other key is in the keyring): the VALIDSIG check refuses it.
    assert "Good signature" in done.stderr
    assert done.returncode != 0
