"""Debian packages fetched by hand, trusted only through the archive's signed Release file."""

from __future__ import annotations

import hashlib
import lzma
import subprocess
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

MIRROR = "http://deb.debian.org/debian"
ARCHIVE_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")


class VerificationError(RuntimeError):
    """A file does not match what the signed Release file says it must be."""


@dataclass(frozen=True)
class PackageFile:
    """One binary package as a Packages index lists it."""

    name: str
    version: str
    filename: str
    sha256: str
    size: int
    depends: str


def release_sha256(release: str) -> dict[str, tuple[str, int]]:
    """The ``SHA256:`` section of a Release file: path -> (hex digest, size)."""
    digests: dict[str, tuple[str, int]] = {}
    inside = False
    for line in release.splitlines():
        if not line.startswith(" "):
            inside = line.strip() == "SHA256:"
            continue
        if inside:
            digest, size, path = line.split()
            digests[path] = (digest.lower(), int(size))
    if not digests:
        raise VerificationError("the Release file has no SHA256 section")
    return digests


def packages_index(text: str) -> dict[str, PackageFile]:
    """Every stanza of a Packages index, by package name (the last stanza of a name wins)."""
    result: dict[str, PackageFile] = {}
    for stanza in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line and not line[0].isspace() and ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if {"Package", "Version", "Filename", "SHA256", "Size"} <= fields.keys():
            result[fields["Package"]] = PackageFile(
                name=fields["Package"],
                version=fields["Version"],
                filename=fields["Filename"],
                sha256=fields["SHA256"].lower(),
                size=int(fields["Size"]),
                depends=fields.get("Depends", ""),
            )
    return result


def check_digest(data: bytes, sha256: str, size: int, what: str) -> bytes:
    """``data`` itself when its SHA-256 and length are the expected ones, else an error."""
    actual = hashlib.sha256(data).hexdigest()
    if len(data) != size or actual != sha256:
        raise VerificationError(
            f"{what}: expected sha256 {sha256} ({size} bytes), got {actual} ({len(data)} bytes)"
        )
    return data


def _download(url: str) -> bytes:
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"only http(s) URLs are fetched, got {url!r}")
    with urllib.request.urlopen(url, timeout=120) as response:  # noqa: S310 (checked above)
        data: bytes = response.read()
    return data


def signed_release(suite: str, keyring: Path = ARCHIVE_KEYRING) -> str:
    """The suite's InRelease, its signature checked by gpgv against Debian's archive keys."""
    signed = _download(f"{MIRROR}/dists/{suite}/InRelease")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "InRelease"
        path.write_bytes(signed)
        # gpgv --output writes only the signed text, so nothing unsigned can be parsed.
        verified = subprocess.run(
            ["gpgv", "--keyring", str(keyring), "--output", "-", str(path)],
            capture_output=True,
            check=False,
        )
    if verified.returncode != 0:
        message = verified.stderr.decode(errors="replace")
        raise VerificationError(f"{suite} InRelease: bad signature\n{message}")
    return verified.stdout.decode()


def fetch_verified(suite: str, names: list[str], out: Path) -> list[Path]:
    """Download ``names`` (amd64, main) from ``suite``; each .deb checked back to the signature."""
    digests = release_sha256(signed_release(suite))
    index_path = "main/binary-amd64/Packages.xz"
    if index_path not in digests:
        raise VerificationError(f"{suite} Release does not list {index_path}")
    compressed = _download(f"{MIRROR}/dists/{suite}/{index_path}")
    check_digest(compressed, *digests[index_path], what=f"{suite} {index_path}")
    index = packages_index(lzma.decompress(compressed).decode())
    out.mkdir(parents=True, exist_ok=True)
    result = []
    for name in names:
        if name not in index:
            raise VerificationError(f"{suite} main has no package {name}")
        package = index[name]
        deb = out / Path(package.filename).name
        if not deb.exists() or hashlib.sha256(deb.read_bytes()).hexdigest() != package.sha256:
            data = _download(f"{MIRROR}/{package.filename}")
            deb.write_bytes(check_digest(data, package.sha256, package.size, what=package.filename))
        result.append(deb)
    return result
