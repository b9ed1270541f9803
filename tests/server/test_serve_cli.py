"""`lm-saes serve`: settings from flags and --set, the URL printed, uvicorn given the app."""

from __future__ import annotations

from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI

from lm_saes.cli import main


def test_serve_runs_uvicorn_on_the_chosen_address(monkeypatch, capsys, tmp_path):
    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
    assert main(["serve", "--port", "8123", "--set", f"store.data_dir={tmp_path}", "--set", "store.timeout_s=1"]) == 0
    (app, kw), = calls
    assert isinstance(app, FastAPI) and kw["host"] == "127.0.0.1" and kw["port"] == 8123
    assert "http://127.0.0.1:8123/" in capsys.readouterr().out
    assert not list(Path(tmp_path).iterdir())  # nothing opened before the app starts


def test_serve_refuses_bad_settings(monkeypatch, capsys):
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: pytest.fail("must not start"))
    assert main(["serve", "--set", "store.nope=1"]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["serve", "--port", "0"]) == 2
