"""One node per state folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from services.node.state_lock import StateLock
from shared.errors import ConfigurationError


def test_a_second_holder_is_refused_until_the_first_releases(tmp_path: Path) -> None:
    first = StateLock(tmp_path / "state")
    with pytest.raises(ConfigurationError, match="another node is running with the state folder"):
        StateLock(tmp_path / "state")
    first.release()
    StateLock(tmp_path / "state").release()


def test_the_lock_dies_with_its_process(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path; "
         "from services.node.state_lock import StateLock; "
         "StateLock(Path(sys.argv[1])); print('held', flush=True); time.sleep(60)",
         str(tmp_path)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(ConfigurationError):
            StateLock(tmp_path)
    finally:
        holder.kill()  # as a crash would
        holder.communicate()
    StateLock(tmp_path).release()
