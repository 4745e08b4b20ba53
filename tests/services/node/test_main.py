"""The node's start-up data loading: through the case cache by default, in RAM on request."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from services.node.config import NodeSettings
from services.node.data.synthetic_sites import write_site
from services.node.main import load_local_data


def _settings(pki_dir: Path, data: Path, state: Path, **extra: object) -> NodeSettings:
    return NodeSettings(
        aggregator_url="https://127.0.0.1:8443",
        tls_cert=pki_dir / "site-1.pem",
        tls_key=pki_dir / "site-1-key.pem",
        tls_ca=pki_dir / "ca.pem",
        data_dir=data,
        state_dir=state,
        val_fraction=0.34,
        **extra,  # type: ignore[arg-type]
    )


def test_cases_come_through_the_cache_and_removed_cases_leave_it(
    pki_dir: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    write_site(data, 1, 3, (24, 24, 24), seed=1)
    settings = _settings(pki_dir, data, tmp_path / "state")

    loaded = load_local_data(settings)

    assert (len(loaded.train), len(loaded.val)) == (2, 1)
    assert all(isinstance(case.image, np.memmap) for case in [*loaded.train, *loaded.val])
    entries = sorted((tmp_path / "state" / "cases").iterdir())
    assert len(entries) == 3
    gone = sorted(path for path in data.iterdir() if path.is_dir())[0]
    for path in gone.iterdir():
        path.unlink()
    gone.rmdir()
    again = load_local_data(settings)
    assert len(again.train) + len(again.val) == 2
    assert len(list((tmp_path / "state" / "cases").iterdir())) == 2


def test_without_the_cache_cases_stay_in_memory_and_an_old_cache_is_deleted(
    pki_dir: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    write_site(data, 1, 3, (24, 24, 24), seed=1)
    load_local_data(_settings(pki_dir, data, tmp_path / "state"))
    assert (tmp_path / "state" / "cases").is_dir()
    loaded = load_local_data(_settings(pki_dir, data, tmp_path / "state", case_cache=False))
    assert not any(isinstance(case.image, np.memmap) for case in loaded.train)
    assert not (tmp_path / "state" / "cases").exists()  # no patient images kept unasked
