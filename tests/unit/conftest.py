"""Unit-test fixtures: a throwaway project root, an in-process CLI runner, receipt validation."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.receipt_audit import validate_receipts_under

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> dict:
        return json.loads(self.stdout)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A project-layout root whose bindings hold a copy of the spine's real stack contract."""
    base = tmp_path / "root"
    (base / "bindings").mkdir(parents=True)
    shutil.copy(FIXTURES / "spine/communications.stack.contract.yaml", base / "bindings")
    return base


@pytest.fixture
def cli(monkeypatch):
    """Run spine-comms in process with a clean environment; returns exit code, stdout, stderr."""
    from spine_comms.cli import app

    for name in list(os.environ):
        if name.startswith(("SPINE_", "STALWART_")) or name == "NO_COLOR":
            monkeypatch.delenv(name, raising=False)

    def run(*args: str, env: dict[str, str] | None = None) -> CliResult:
        runner = CliRunner()
        result = runner.invoke(app, list(args), env=env or {}, catch_exceptions=False)
        return CliResult(result.exit_code, result.stdout, result.stderr)

    return run


@pytest.fixture(autouse=True)
def _every_receipt_is_valid(tmp_path: Path):
    """Every receipt.json a test writes under its tmp_path must match the shipped schema."""
    yield
    validate_receipts_under(tmp_path)
