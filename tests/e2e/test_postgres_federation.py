"""A whole federation with the aggregator's state in PostgreSQL: real processes, mutual TLS."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from services.admin.main import main as admin
from services.demo.processes import Kit, node_env, spawn, stop
from services.node.data.synthetic_sites import write_site
from tests.e2e.conftest import start_aggregator

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
NAMES = ["site-1", "site-2"]


def test_two_nodes_complete_a_run_with_postgresql_state(
    pki_dir: Path, postgres_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for index, name in enumerate(NAMES, start=1):
        write_site(tmp_path / "data" / name, index, 3, (24, 24, 24), seed=3)
    aggregator = start_aggregator(pki_dir, tmp_path, FEDSEG_DATABASE_URL=postgres_url)
    kit = Kit.of(pki_dir, "admin")
    connection = ["--url", aggregator.url, "--ca", str(kit.ca), "--cert", str(kit.cert)]
    connection += ["--key", str(kit.key)]
    nodes = []
    try:
        plan = ["--rounds", "1", "--min-nodes", "2", "--init-filters", "8", "--crop", "24"]
        assert admin([*connection, "create-run", "--nodes", *NAMES, *plan, "--steps", "1"]) == 0
        nodes = [
            spawn(
                "services.node.main",
                node_env(
                    Kit.of(pki_dir, name),
                    aggregator.url,
                    tmp_path / "data" / name,
                    tmp_path / "nodes" / name,
                    OMP_NUM_THREADS="1",
                    FEDSEG_VAL_FRACTION="0.34",
                ),
                tmp_path / f"{name}.log",
            )
            for name in NAMES
        ]
        code = admin([*connection, "wait", "--interval", "0.5", "--timeout", "240"])
        exits = [node.wait(60) for node in nodes]
    finally:
        for node in nodes:
            stop(node)
        stop(aggregator.process)
    out = capsys.readouterr().out
    logs = "\n".join((tmp_path / f"{n}.log").read_text()[-2000:] for n in NAMES)
    assert (code, exits) == (0, [0, 0]), out + logs + aggregator.log.read_text()[-2000:]
    assert out.rstrip().endswith("run 1: completed")
    assert not (aggregator.state_dir / "aggregator.db").exists()  # nothing went to SQLite
    engine = sa.create_engine(postgres_url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT number, kind, state FROM rounds ORDER BY number"))
        assert [tuple(row) for row in rows] == [(1, "train", "closed"), (2, "evaluate", "closed")]
        updates = conn.execute(sa.text("SELECT count(*) FROM updates WHERE status = 'accepted'"))
        assert updates.scalar_one() == 4  # two nodes, a training and an evaluation round
        run_state = conn.execute(sa.text("SELECT state FROM runs")).scalar_one()
    engine.dispose()
    assert run_state == "completed"
