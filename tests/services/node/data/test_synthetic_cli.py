"""Tests of the `fedseg-synth` command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from services.node.data.brats import find_cases
from services.node.data.synthetic_cli import main


def test_main_writes_one_site(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["--out", str(tmp_path), "--site", "2", "--cases", "2", "--shape", "24", "24", "32"]
    )

    assert code == 0
    assert capsys.readouterr().out == f"Site 2: 2 cases ready under {tmp_path}\n"
    cases = find_cases(tmp_path)
    assert [case.case_id for case in cases] == ["site2_case000", "site2_case001"]


def test_main_rejects_bad_values_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--out", str(tmp_path), "--site", "0", "--cases", "0"])

    assert code == 1
    assert capsys.readouterr().err == "fedseg-synth: num_cases must be >= 1, got 0\n"


def test_main_rejects_missing_arguments() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--site", "0"])

    assert exit_info.value.code == 2


def test_module_runs_as_a_script(tmp_path: Path) -> None:
    args = ["--out", str(tmp_path), "--site", "0", "--cases", "1", "--shape", "24", "24", "24"]
    result = subprocess.run(
        [sys.executable, "-m", "services.node.data.synthetic_cli", *args],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert [case.case_id for case in find_cases(tmp_path)] == ["site0_case000"]
