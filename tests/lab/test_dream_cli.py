"""``labledger dream run`` with the shipped workloads, and ``dream report`` (issue #6)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labledger.cli import dream
from labledger.cli.main import run as cli
from labledger.lab.dream.config import DomainSpec, package_dir
from labledger.testing.backends import SqliteBackend
from labledger.testing.projection_contract import fresh_ledger


def no_cuda(spec: DomainSpec) -> str | None:
    return "no CUDA device (torch.cuda.is_available() is false)" if spec.requires else None


def test_run_every_domain_with_real_workloads_then_report(
    sqlite_backend: SqliteBackend,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(dream, "unavailable", no_cuda)  # importing torch takes seconds
    with fresh_ledger(sqlite_backend) as store:
        url = store.url
    # 8 ms trials serve a handful of requests: below the shipped minimum of 20 they
    # would all be failed trials (issue #14), so this fast test lowers the minimum.
    regimes = tmp_path / "regimes.yaml"
    shipped = (package_dir() / "regimes.yaml").read_text()
    regimes.write_text(shipped.replace("min_requests: 20", "min_requests: 1"))
    args = [
        "--db",
        url,
        "dream",
        "run",
        "--regimes",
        str(regimes),
        "--domain",
        "all",
        "--generations",
        "1",
        "--population",
        "1",
        "--trials",
        "2",
        "--budget-ms",
        "8",
        "--seed",
        "3",
        "--workdir",
        str(tmp_path),
    ]
    assert cli(args) == 0
    out, err = capsys.readouterr()
    assert "skipping domain gpu: no CUDA device" in err
    runs = [json.loads(line) for line in out.splitlines()]
    assert [r["domain"] for r in runs] == ["cpu", "memory", "storage", "python_runtime"]
    for r in runs:
        assert r["trials_in_log"] == r["trials_measured"] == 1 * 4 * 2, r
        assert r["generations"][0]["best_cand_id"].startswith(r["run_id"] + ".gen0_ind")
    png = tmp_path / "report.png"
    report = ["dream", "report", "--out", str(png), "--top", "2", "--all-runs", "--format", "table"]
    assert cli(["--db", url, *report]) == 0
    out, err = capsys.readouterr()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for domain in ("cpu:", "memory:", "storage:", "python_runtime:"):
        assert domain in out.splitlines()
    best = runs[0]["generations"][0]["best_cand_id"]
    assert best in out
    assert cli(["--db", url, "dream", "pack", best]) == 0
    pack = json.loads(capsys.readouterr().out)
    assert pack["schema"] == "candidate_pack.v2" and pack["safe"] is True
    assert [r["regime"] for r in pack["regimes"]] == ["idle", "normal", "stress", "mixed"]


def test_report_on_an_empty_log_says_so(
    sqlite_backend: SqliteBackend, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with fresh_ledger(sqlite_backend) as store:
        url = store.url
    assert cli(["--db", url, "dream", "report", "--out", str(tmp_path / "r.png")]) == 0
    assert "no D-REAM trials" in capsys.readouterr().err
    assert not (tmp_path / "r.png").exists()


def test_run_refuses_bad_settings(
    sqlite_backend: SqliteBackend, capsys: pytest.CaptureFixture[str]
) -> None:
    with fresh_ledger(sqlite_backend) as store:
        url = store.url
    assert cli(["--db", url, "dream", "run", "--domain", "nope", "--trials", "1"]) == 2
    assert "unknown domain 'nope'" in capsys.readouterr().err
    assert cli(["--db", url, "dream", "run", "--resume", "missing"]) == 2
    assert "no D-REAM run 'missing'" in capsys.readouterr().err
