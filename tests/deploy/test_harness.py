"""The compose check's pure parts: README commands, Debian verification, the round table."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from deploy.harness import readme
from deploy.harness.commands import CheckError
from deploy.harness.debian import (
    VerificationError,
    check_digest,
    packages_index,
    release_sha256,
)
from deploy.harness.federation import check_round_table
from deploy.harness.wheels import project_name, write_simple_index
from tests.deploy.compose import REPO_ROOT

TOP = readme.README.read_text()
DEPLOY = readme.DEPLOY_README.read_text()

XZ = "main/binary-amd64/Packages.xz"
RELEASE = f"""Origin: Debian
Suite: stable
MD5Sum:
 203e1451a4c2e0edf3646a5da3cec2d8  9679304 {XZ}
SHA256:
 BE3D7D96A040EDA0505C1808CCCC67F183BBC05DFF0842C50F88E6C396557412  9679304 {XZ}
 0000000000000000000000000000000000000000000000000000000000000001      12 main/Contents-all
Acquire-By-Hash: yes
"""
PACKAGES = """Package: docker-buildx
Version: 0.13.1+ds1-3
Depends: libc6 (>= 2.34)
Filename: pool/main/d/docker-buildx/docker-buildx_0.13.1+ds1-3_amd64.deb
Size: 13239200
SHA256: fcf8c48204d1603c8f209451d7827eb91bf30759578baf7704e9e1a87e5f1d7f
Description: Docker CLI plugin for extended build capabilities with BuildKit
 buildx is a Docker CLI plugin.

Package: docker-compose
Version: 2.26.1-4
Depends: libc6 (>= 2.34)
Filename: pool/main/d/docker-compose/docker-compose_2.26.1-4_amd64.deb
Size: 12965524
SHA256: 47681197cb2b1ab88206b42a1a92fc75f50d9530a6322d03494a473eed0408ea
"""
TABLE = """[   0.0s] run 1 (compose): 2 rounds over site-1, site-2, site-3
round  state       nodes  samples  before   after  global TC    WT    ET  mean  seconds
--------------------------------------------------------------------------------------
    1  closed        3/3        6       -   0.101      0.120 0.130 0.140 0.130     12.0
    2  closed        3/3        6   0.130   0.150      0.160 0.170 0.180 0.170     11.0

run 1: completed
"""


def test_readme_and_deploy_readme_print_the_same_compose_command() -> None:
    command = readme.run_command(TOP)
    assert command == "docker compose up -d && docker compose wait coordinator"
    assert readme.line_with(DEPLOY, "docker compose up ") == command
    postgres = readme.postgres_block(DEPLOY)
    assert postgres[-1] == readme.with_profile(command, "postgres")
    assert [line.split("=")[0] for line in postgres[:-1]] == [
        "export FEDSEG_POSTGRES_PASSWORD",
        "export FEDSEG_DATABASE_URL",
    ]
    lines = [line for text in (TOP, DEPLOY) for block in readme.code_blocks(text) for line in block]
    assert not [line for line in lines if "--exit-code-from" in line]


def test_readme_status_queries_are_those_the_check_runs() -> None:
    status = readme.status_block(DEPLOY)
    assert status[0] == "docker compose cp aggregator:/pki/kits/admin/. ./admin-kit"
    top = readme.block_with(TOP, "docker compose exec aggregator fedseg-admin rounds")
    assert set(top) <= set(status)
    assert any(line.startswith("curl --cacert admin-kit/ca.pem") for line in status)
    assert any(line.startswith("fedseg-admin --url https://127.0.0.1:8443") for line in status)


def test_code_blocks_join_continuations_and_drop_comments() -> None:
    text = "x\n```sh\n# a comment\nfoo --a \\\n   --b   # trailing\n\nbar\n```\n"
    assert readme.code_blocks(text) == [["foo --a --b", "bar"]]
    with pytest.raises(CheckError):
        readme.block_with(text, "baz")


def test_release_sha256_reads_only_the_sha256_section() -> None:
    digests = release_sha256(RELEASE)
    assert digests == {
        "main/binary-amd64/Packages.xz": (
            "be3d7d96a040eda0505c1808cccc67f183bbc05dff0842c50f88e6c396557412",
            9679304,
        ),
        "main/Contents-all": ("0" * 63 + "1", 12),
    }
    with pytest.raises(VerificationError, match="no SHA256 section"):
        release_sha256("Origin: Debian\nMD5Sum:\n 00  1 x\n")


def test_packages_index_reads_each_stanza() -> None:
    index = packages_index(PACKAGES)
    assert sorted(index) == ["docker-buildx", "docker-compose"]
    compose = index["docker-compose"]
    assert (compose.version, compose.size, compose.depends) == (
        "2.26.1-4",
        12965524,
        "libc6 (>= 2.34)",
    )
    assert compose.filename == "pool/main/d/docker-compose/docker-compose_2.26.1-4_amd64.deb"
    assert compose.sha256.startswith("47681197cb2b")


def test_check_digest_refuses_other_bytes_or_length() -> None:
    data = b"deb contents"
    digest = hashlib.sha256(data).hexdigest()
    assert check_digest(data, digest, len(data), "x.deb") == data
    with pytest.raises(VerificationError, match=r"x\.deb: expected sha256"):
        check_digest(data + b"!", digest, len(data), "x.deb")
    with pytest.raises(VerificationError):
        check_digest(data, digest, len(data) + 1, "x.deb")


def test_round_table_check_accepts_a_completed_run_only() -> None:
    check_round_table(TABLE, rounds=2)
    with pytest.raises(CheckError, match="round 3 is not closed"):
        check_round_table(TABLE, rounds=3)
    with pytest.raises(CheckError, match="not 'run N: completed'"):
        check_round_table(TABLE.replace("run 1: completed", "run 1: failed"), rounds=2)
    with pytest.raises(CheckError, match="round 2 is not closed with 3/3"):
        check_round_table(
            TABLE.replace(
                "closed        3/3        6   0.130", "closed        2/3        6   0.130"
            ),
            rounds=2,
        )
    with pytest.raises(CheckError, match="no round table"):
        check_round_table("run 1: completed\n", rounds=1)


def test_local_index_is_a_pep_503_simple_index(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "Jinja2-3.1.6-py3-none-any.whl").write_bytes(b"jinja")
    (wheels / "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl").write_bytes(b"torch")
    write_simple_index(wheels, tmp_path)
    assert project_name("typing_extensions-4.16.0-py3-none-any.whl") == "typing-extensions"
    page = (tmp_path / "simple" / "torch" / "index.html").read_text()
    digest = hashlib.sha256(b"torch").hexdigest()
    assert (
        f'href="../../wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl#sha256={digest}"'
        in page
    )
    assert (tmp_path / "simple" / "jinja2" / "index.html").is_file()


def test_every_pip_install_in_both_dockerfiles_can_trust_the_extra_ca() -> None:
    for name in ("Dockerfile.server", "Dockerfile.node"):
        text = (REPO_ROOT / name).read_text().replace("\\\n", " ")
        runs = [line for line in text.splitlines() if line.startswith("RUN ")]
        with_pip = [line for line in runs if "pip install" in line]
        assert len(with_pip) == 2, name
        for line in with_pip:
            assert line.startswith("RUN --mount=type=secret,id=extra-ca "), (name, line)
            assert line.index("export PIP_CERT=/tmp/pip-ca.pem") < line.index("pip install")
            assert "rm -f /tmp/pip-ca.pem" in line
    assert "--secret id=extra-ca,src=" in DEPLOY
