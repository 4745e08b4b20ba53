"""The dashboard's files ship in the package: a non-editable install serves the same page."""

from __future__ import annotations

import tomllib
from fnmatch import fnmatch
from importlib import resources
from pathlib import Path

import pytest

from services.dashboard.assets import ASSET_NAMES, asset
from shared.errors import NotFoundError

REPO_ROOT = Path(__file__).resolve().parents[3]


def test_the_static_folder_holds_exactly_the_served_files() -> None:
    folder = resources.files("services.dashboard").joinpath("static")
    assert {entry.name for entry in folder.iterdir()} == ASSET_NAMES


def test_every_served_file_is_package_data() -> None:
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    globs = config["package-data"]["services.dashboard"]
    assert all(any(fnmatch(f"static/{name}", g) for g in globs) for name in ASSET_NAMES)


def test_asset_refuses_any_other_name() -> None:
    for name in ("../proxy.py", "static/index.html", "", "INDEX.HTML"):
        with pytest.raises(NotFoundError):
            asset(name)


def test_the_page_loads_only_its_own_files() -> None:
    page = asset("index.html").body.decode()
    for name in ASSET_NAMES - {"index.html"}:
        assert f'"{name}"' in page
    assert "<script>" not in page  # no inline script: the CSP allows none
    assert "style=" not in page
