"""The whole loop against a fake OpenAI-compatible server run as its own process (fake_openai.py):
explanations and scores stored with their prompts and replies, retries through injected 429s,
503s and timeouts, an unparseable reply recorded as failed, resuming after SIGKILL without asking
twice, the dry run, and one-line errors that keep what was scored."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from lm_saes.cli import main
from lm_saes.config import load_config
from lm_saes.interpret.config import InterpretConfig
from lm_saes.interpret.stage import run_interpret
from lm_saes.store.explanations import explained, firing_features, interpretations
from lm_saes.store.schema import EXPLANATIONS

KEY = "sk-test-7b3f0c9e-do-not-print"
EXAMPLE = Path(__file__).parents[2] / "examples" / "interpret_openai.toml"


def model_cfg(analyzed, server, name, **extra) -> InterpretConfig:
    explainer = {"kind": "openai", "base_url": server.url, "model": "fake-1", "api_key_env": "FAKE_KEY",
                 "concurrency": 4, "backoff_s": 0.01, "timeout_s": 1.0, **extra.pop("explainer", {})}
    return InterpretConfig.model_validate({"dictionary": analyzed.name, "store": analyzed.store, "name": name,
                                           "explainer": explainer, "device": "cpu", "progress": False, **extra})


def chosen(store, analyzed) -> list[int]:
    """The features a run interprets by default: those firing in min_contexts contexts."""
    return firing_features(store, store.analysis(analyzed.name)["id"], InterpretConfig.model_fields["min_contexts"].default)


def ok_requests(server) -> Counter:
    """(stage, feature) -> how many requests the server answered with 200."""
    return Counter((r["stage"], r["feature"]) for r in server.requests() if r["status"] == 200)


def test_the_whole_loop_through_retries_and_garbage(analyzed, store, fake_server, monkeypatch):
    monkeypatch.setenv("FAKE_KEY", KEY)
    firing = chosen(store, analyzed)
    garbled = firing[1]
    clean = fake_server("--key", KEY)
    troubled = fake_server("--key", KEY, "--fail-every", "7", "--hang-every", "23", "--hang", "1.5",
                           "--garbage", f"detect:{garbled}")
    run_interpret(model_cfg(analyzed, clean, "clean"))
    result = run_interpret(model_cfg(analyzed, troubled, "troubled")).results[0]

    log = troubled.requests()
    assert {r["status"] for r in log} == {200, 429, 503, "held"}, "the injected trouble happened"
    answered = ok_requests(troubled)
    assert set(answered.values()) == {1}, "a request answered once was sent again"
    assert {f for s, f in answered if s == "explain"} == set(firing)
    assert {s for s, _ in answered} == {"explain", "simulate", "detect", "fuzz"}
    assert result.n_scored == len(firing) - 1 and result.n_failed == 1 and result.n_requests == len(log)

    docs = {d["index"]: d for d in store.db[EXPLANATIONS].find({"dictionary": analyzed.name, "explainer": "troubled"})}
    failed = docs[garbled]
    assert failed["status"] == "failed" and failed["failures"][0]["stage"] == "detect"
    assert failed["failures"][0]["reply"] == "I am sorry, but I cannot help with that."
    assert "detection" not in failed["scores"] and "simulation" in failed["scores"]
    reference = {d["index"]: d for d in store.db[EXPLANATIONS].find({"dictionary": analyzed.name, "explainer": "clean"})}
    for index, doc in docs.items():  # the trouble changed nothing else: the same replies, the same scores
        assert doc["explanation"] == reference[index]["explanation"]
        assert {s: v for s, v in reference[index]["scores"].items() if index != garbled or s != "detection"} \
            == doc["scores"]
        assert [r["stage"] for r in doc["requests"]][0] == "explain" and doc["requests"][0]["messages"][1][
            "content"].startswith(f"Feature {index}\n")
    top = store.features(analyzed.name, sort="detection", descending=True, limit=1)[0]
    assert top["explanation"]["explainer"] == "troubled" and top["explanation"]["kind"] == "openai"
    summary = next(s for s in interpretations(store, analyzed.name) if s["explainer"] == "troubled")
    assert summary["n_scored"] == len(firing) - 1 and summary["means"]["detection"]["n"] == len(firing) - 1
    assert KEY not in str(list(store.db[EXPLANATIONS].find({}, {"_id": 0}))), "the key was stored"


def test_a_dry_run_of_the_example_counts_and_sends_nothing(analyzed, store, fake_server, monkeypatch, capsys):
    server = fake_server()
    monkeypatch.delenv("FAKE_KEY", raising=False)  # a dry run needs no key
    args = [str(EXAMPLE), *overrides(analyzed, server, "dry"), "--dry-run"]
    cfg = load_config(InterpretConfig, EXAMPLE, [*args[2:-1:2], "dry_run=true"])
    assert cfg.sample == 200 and cfg.explainer.model == "fake-1"  # the example, pointed at the fake server
    result = run_interpret(cfg).results[0]
    n = len(chosen(store, analyzed))
    assert result.dry_run and result.n_features == n  # the sample holds every feature that fires here
    assert 3 * n <= result.n_requests <= 4 * n and result.n_prompt_tokens > 200 * n
    assert server.requests() == [] and not explained(store, analyzed.name, "default", "dry", "x")
    assert main(["interpret", *args]) == 0
    out = capsys.readouterr().out
    assert f"{result.n_requests:,} requests, about {result.n_prompt_tokens:,} prompt tokens" in out
    assert "nothing was sent" in out and server.requests() == []


def overrides(analyzed, server, name, model="fake-1", key_env="FAKE_KEY") -> list[str]:
    sets = [f"dictionary={analyzed.name}", f"store.data_dir={analyzed.store.data_dir}", f"name={name}",
            "explainer.kind=openai", f"explainer.base_url={server if isinstance(server, str) else server.url}",
            f"explainer.model={model}", f"explainer.api_key_env={key_env}", "explainer.max_retries=1",
            "explainer.backoff_s=0.01", "explainer.timeout_s=2", "device=cpu", "progress=false"]
    return [a for s in sets for a in ("--set", s)]


def test_bad_endpoints_and_inputs_fail_in_one_line_and_keep_what_was_scored(analyzed, store, fake_server,
                                                                             monkeypatch, capsys):
    monkeypatch.setenv("FAKE_KEY", KEY)
    server = fake_server("--key", KEY)
    run_id = store.analysis(analyzed.name)["id"]
    first = chosen(store, analyzed)[:5]
    assert main(["interpret", *overrides(analyzed, server, "kept"), "--set", f"features={first}"]) == 0
    kept = list(store.db[EXPLANATIONS].find({"explainer": "kept"}, {"_id": 0, "created_at": 0}))
    assert len(kept) == 5
    capsys.readouterr()

    def error(*args: str) -> str:
        assert main(["interpret", *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, err
        return err

    with socket_closed() as port:
        assert "cannot connect" in error(*overrides(analyzed, f"http://127.0.0.1:{port}/v1", "kept"))
    monkeypatch.setenv("FAKE_KEY", "sk-wrong-0123456789")
    wrong = error(*overrides(analyzed, server, "kept"))
    assert "refused the key in $FAKE_KEY (HTTP 401" in wrong and "sk-wrong-0123456789" not in wrong
    monkeypatch.setenv("FAKE_KEY", KEY)
    assert "does not serve that model" in error(*overrides(analyzed, server, "kept", model="gpt-nope"))
    assert "no complete analysis 'default'" in error("--set", "dictionary=never-analyzed",
                                                     "--set", f"store.data_dir={analyzed.store.data_dir}")
    monkeypatch.delenv("FAKE_KEY")
    assert "FAKE_KEY (api_key_env)" in error(*overrides(analyzed, server, "kept"))
    assert list(store.db[EXPLANATIONS].find({"explainer": "kept"}, {"_id": 0, "created_at": 0})) == kept


class socket_closed:
    """A port nothing listens on."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    def __exit__(self, *exc) -> None:
        pass


@pytest.mark.slow
def test_killed_and_rerun_asks_nothing_twice_for_a_finished_feature(analyzed, store, fake_server, tmp_path):
    server = fake_server("--delay", "0.05")
    run_id = store.analysis(analyzed.name)["id"]
    firing = chosen(store, analyzed)
    command = [sys.executable, "-m", "lm_saes", "interpret", *overrides(analyzed, server, "killed", key_env='""'),
               "--set", "explainer.concurrency=2"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(finished := explained(store, analyzed.name, "default", "killed", run_id)) < len(firing) // 3:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "no feature finished in time"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    finished = explained(store, analyzed.name, "default", "killed", run_id)  # what the store held at the kill
    assert 0 < len(finished) < len(firing)
    before = len(server.requests())
    rerun = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    after = server.requests()[before:]
    asked_again = {r["feature"] for r in after}
    assert not asked_again & finished, f"features finished before the kill were asked again: {asked_again & finished}"
    assert explained(store, analyzed.name, "default", "killed", run_id) == set(firing)
    assert Counter(r["stage"] for r in server.requests() if r["feature"] in finished) == {
        stage: len(finished) for stage in ("explain", "simulate", "detect", "fuzz")}
    print(f"\nkill/resume: {len(firing)} features, {len(finished)} finished at the kill ({before} requests), "
          f"rerun sent {len(after)} requests, none for a finished feature")
