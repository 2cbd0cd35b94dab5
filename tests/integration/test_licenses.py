"""Licences: the LICENSE file is the Apache-2.0 text Cargo.toml names, and
every dependency's licence is one deny.toml allows, no banned crate and no
source but crates.io (`cargo deny check licenses bans sources`, offline: it
needs no advisory database); no pre-release crate but the known ones. .ci/run installs
cargo-deny (`cargo install --locked cargo-deny`)."""

import shutil
import subprocess
from pathlib import Path

import pytest

import lsvfs


def test_license_file_is_the_apache_2_text():
    text = (lsvfs.ROOT / "LICENSE").read_text()
    assert 'license = "Apache-2.0"' in (lsvfs.ROOT / "Cargo.toml").read_text()
    assert "Apache License\n                           Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text and len(text) > 11000


def cargo_deny() -> str | None:
    found = shutil.which("cargo-deny")
    if found:
        return found
    home = Path.home() / ".cargo" / "bin" / "cargo-deny"
    return str(home) if home.exists() else None


def test_dependency_licences_are_allowed():
    tool = cargo_deny()
    if tool is None:
        pytest.skip("cargo-deny is not installed: cargo install --locked cargo-deny")
    proc = subprocess.run([tool, "deny", "--offline", "check", "licenses", "bans", "sources"], cwd=lsvfs.ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "bans ok, licenses ok, sources ok" in proc.stderr + proc.stdout


# Pre-release crates in Cargo.lock, each with the reason it cannot be avoided.
PRERELEASES = {
    # russh (SFTP) pins ssh-key =0.7.0-rc.12 whatever its features; no
    # ssh-key 0.7 release exists yet.
    "ssh-key",
}


def test_no_release_candidates_but_the_known_ones():
    lock = (lsvfs.ROOT / "Cargo.lock").read_text()
    found = set()
    for block in lock.split("[[package]]")[1:]:
        fields = dict(line.split(" = ", 1) for line in block.strip().splitlines() if " = " in line)
        version = fields.get("version", "").strip('"')
        if "-" in version.split("+", 1)[0]:
            found.add(fields["name"].strip('"'))
    assert found <= PRERELEASES, f"pre-release crates: {sorted(found - PRERELEASES)}"
