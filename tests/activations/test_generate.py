"""`lm-saes generate`: cache contents against a direct model forward, resume, DP, bad inputs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer, GPT2LMHeadModel

from lm_saes.activations.generate import generate
from lm_saes.activations.manifest import file_sha256, read_manifest
from lm_saes.config import DataConfig, GenerateConfig, load_config
from lm_saes.data.tokens import build_contexts, load_texts
from lm_saes.errors import ConfigError, DatasetError, DiskSpaceError, ModelError

HOOKS = ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
CTX = 32


def make_config(tmp_path: Path, model_dir: Path, dataset_file: Path, *overrides: str) -> GenerateConfig:
    base = [
        f"model.name={model_dir}", f"data.path={dataset_file}", f"data.context_size={CTX}",
        "data.max_tokens=6400", f'hooks={json.dumps(HOOKS)}', f"output_dir={tmp_path / 'cache'}",
        "batch_size=16", "shard_size_mb=0.1", "progress=false", "disk_headroom_gb=0",
    ]
    return load_config(GenerateConfig, None, base + list(overrides))


def read_cache(hook_dir: Path) -> dict[str, torch.Tensor]:
    """Every shard of a hook directory concatenated, in manifest order."""
    manifest = read_manifest(hook_dir)
    shards = [load_file(hook_dir / s.file) for s in manifest.shards]
    return {key: torch.cat([s[key] for s in shards]) for key in shards[0]}


def expected_contexts(cfg: GenerateConfig):
    tokenizer = AutoTokenizer.from_pretrained(cfg.model.name)
    return build_contexts(load_texts(cfg.data), tokenizer, cfg.data, tokenizer.pad_token_id)


def hf_hidden_states(model_dir: Path, tokens: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Residual stream after each block, straight from Hugging Face (no transformer_lens)."""
    model = GPT2LMHeadModel.from_pretrained(model_dir, attn_implementation="eager").eval()
    with torch.no_grad():
        return model(tokens.long(), output_hidden_states=True).hidden_states


def test_2d_cache_equals_direct_forward(tmp_path, model_dir, dataset_file):
    cfg = make_config(tmp_path, model_dir, dataset_file, "layout=2d")
    result = generate(cfg)
    contexts = expected_contexts(cfg)
    n = len(contexts.tokens)
    assert n == 6400 // CTX and result.n_tokens == n * CTX
    hidden = hf_hidden_states(model_dir, contexts.tokens)
    for layer, hook in enumerate(HOOKS):
        manifest = read_manifest(tmp_path / "cache" / hook)
        assert (manifest.hook, manifest.layout, manifest.dtype) == (hook, "2d", "bfloat16")
        assert (manifest.d_model, manifest.context_size, manifest.n_contexts) == (32, CTX, n)
        assert manifest.n_tokens == n * CTX and manifest.config == cfg.model_dump(mode="json")
        cache = read_cache(tmp_path / "cache" / hook)
        assert cache["activations"].shape == (n, CTX, 32) and cache["activations"].dtype == torch.bfloat16
        order = cache["context_ids"]
        assert sorted(order.tolist()) == list(range(n))
        assert torch.equal(cache["tokens"], contexts.tokens[order])
        assert cache["mask"].all()  # packed contexts have no padding
        # blocks.L.hook_resid_post is HF's hidden_states[L + 1] (the last one has ln_f; the model has 3).
        expected = hidden[layer + 1][order]
        torch.testing.assert_close(cache["activations"].float(), expected, atol=0.05, rtol=0.02)


def test_1d_cache_holds_every_kept_token_once_shuffled(tmp_path, model_dir, dataset_file):
    cfg = make_config(tmp_path, model_dir, dataset_file)
    generate(cfg)
    contexts = expected_contexts(cfg)
    bos = AutoTokenizer.from_pretrained(model_dir).bos_token_id
    kept = contexts.tokens != bos  # BOS at position 0 and as document separator
    hidden = hf_hidden_states(model_dir, contexts.tokens)
    for layer, hook in enumerate(HOOKS):
        manifest = read_manifest(tmp_path / "cache" / hook)
        cache = read_cache(tmp_path / "cache" / hook)
        assert manifest.layout == "1d" and manifest.n_tokens == int(kept.sum())
        assert cache["activations"].shape == (int(kept.sum()), 32)
        assert not (cache["tokens"] == bos).any()
        assert torch.equal(torch.bincount(cache["tokens"]), torch.bincount(contexts.tokens[kept]))
        # Same multiset of vectors as the forward: compare sorted per-row sums and the total.
        direct = hidden[layer + 1][kept].to(torch.bfloat16).float()
        stored = cache["activations"].float()
        torch.testing.assert_close(stored.sum(0), direct.sum(0), atol=1.0, rtol=1e-3)
        torch.testing.assert_close(stored.sum(1).sort().values, direct.sum(1).sort().values, atol=0.1, rtol=0.02)
        # Shuffled: the first rows are not the first contexts' tokens in order.
        assert not torch.equal(cache["tokens"][:50], contexts.tokens[kept][:50])
        for shard in manifest.shards:
            path = tmp_path / "cache" / hook / shard.file
            assert path.stat().st_size == shard.bytes <= 0.1 * 2**20
            assert file_sha256(path) == shard.sha256
    assert json.loads((tmp_path / "cache" / "config.json").read_text()) == cfg.model_dump(mode="json")


def test_unpacked_contexts_mask_padding(tmp_path, model_dir, dataset_file):
    cfg = make_config(tmp_path, model_dir, dataset_file, "layout=2d", "data.packing=false", "data.max_tokens=640")
    generate(cfg)
    contexts = expected_contexts(cfg)
    cache = read_cache(tmp_path / "cache" / HOOKS[0])
    assert torch.equal(cache["mask"], contexts.mask[cache["context_ids"]])
    assert (cache["tokens"][:, 0] == AutoTokenizer.from_pretrained(model_dir).bos_token_id).all()


def test_complete_cache_is_reused_and_overwrite_regenerates(tmp_path, model_dir, dataset_file):
    cfg = make_config(tmp_path, model_dir, dataset_file)
    assert not generate(cfg).reused
    shard = tmp_path / "cache" / HOOKS[0] / "shard-00000.safetensors"
    before = shard.stat().st_mtime_ns
    assert generate(cfg).reused and shard.stat().st_mtime_ns == before
    assert not generate(cfg.model_copy(update={"overwrite": True})).reused
    assert shard.stat().st_mtime_ns != before
    with pytest.raises(ConfigError, match=r"different config \(fields \['seed'\] differ\)"):
        generate(cfg.model_copy(update={"seed": 5}))


def _cli(cfg_overrides: list[str], nproc: int = 1) -> list[str]:
    launcher = [sys.executable, "-m", "lm_saes"]
    if nproc > 1:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                    f"--nproc_per_node={nproc}", "-m", "lm_saes"]
    return launcher + ["generate"] + [a for o in cfg_overrides for a in ("--set", o)]


def _overrides(cfg: GenerateConfig) -> list[str]:
    return [
        f"model.name={cfg.model.name}", f"data.path={cfg.data.path}", f"data.context_size={CTX}",
        f"data.max_tokens={cfg.data.max_tokens}", f"hooks={json.dumps(cfg.hooks)}",
        f"output_dir={cfg.output_dir}", f"batch_size={cfg.batch_size}",
        f"shard_size_mb={cfg.shard_size_mb}", "progress=false", "disk_headroom_gb=0",
    ]


def assert_same_cache(a: Path, b: Path) -> None:
    for hook in HOOKS:
        ma, mb = read_manifest(a / hook), read_manifest(b / hook)
        assert ma.shards == mb.shards and ma.n_tokens == mb.n_tokens
        for shard in ma.shards:
            assert (a / hook / shard.file).read_bytes() == (b / hook / shard.file).read_bytes()


@pytest.mark.slow
def test_killed_run_resumes_to_identical_cache(tmp_path, model_dir, dataset_file):
    reference = make_config(tmp_path / "ref", model_dir, dataset_file, "data.max_tokens=40000", "shard_size_mb=0.05")
    generate(reference)
    cfg = reference.model_copy(update={"output_dir": tmp_path / "killed"})
    proc = subprocess.Popen(_cli(_overrides(cfg)), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    log = cfg.output_dir / ".generate" / "rank-0.jsonl"
    deadline = time.monotonic() + 120
    while not (log.is_file() and len(log.read_text().splitlines()) >= 3):
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_logged = len(log.read_text().splitlines())
    assert n_logged < len(read_manifest(reference.output_dir / HOOKS[0]).shards), "killed too late"
    with pytest.raises(Exception, match="did not finish"):
        read_manifest(cfg.output_dir / HOOKS[0])
    resumed = generate(cfg)
    assert not resumed.reused
    assert_same_cache(reference.output_dir, cfg.output_dir)
    assert not (cfg.output_dir / ".generate").exists()


@pytest.mark.slow
def test_torchrun_two_processes_write_one_cache(tmp_path, model_dir, dataset_file):
    reference = make_config(tmp_path / "ref", model_dir, dataset_file)
    generate(reference)
    cfg = reference.model_copy(update={"output_dir": tmp_path / "dp"})
    env = dict(os.environ, OMP_NUM_THREADS="1")
    run = subprocess.run(_cli(_overrides(cfg), nproc=2), env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert_same_cache(reference.output_dir, cfg.output_dir)


def test_unfinished_cache_of_another_config_is_refused(tmp_path, model_dir, dataset_file):
    cfg = make_config(tmp_path, model_dir, dataset_file)
    (cfg.output_dir / ".generate").mkdir(parents=True)
    (cfg.output_dir / ".generate" / "config.json").write_text(json.dumps({"something": "else"}))
    with pytest.raises(ConfigError, match="unfinished cache from a different config"):
        generate(cfg)


def test_missing_dataset_file(tmp_path, model_dir):
    cfg = make_config(tmp_path, model_dir, tmp_path / "nope.jsonl")
    with pytest.raises(DatasetError, match="nope.jsonl"):
        generate(cfg)


def test_missing_text_column(tmp_path, model_dir):
    data = tmp_path / "d.jsonl"
    data.write_text('{"body": "hello there"}\n')
    with pytest.raises(DatasetError, match=r"text_field='text' is not a column.*body"):
        load_texts(DataConfig(path=str(data)))


def test_unknown_hook_lists_valid_hooks(tmp_path, model_dir, dataset_file):
    cfg = make_config(tmp_path, model_dir, dataset_file, 'hooks=["blocks.0.hook_resid_pots"]')
    with pytest.raises(ModelError) as e:
        generate(cfg)
    assert "did you mean blocks.0.hook_resid_post" in str(e.value)
    assert "blocks.1.hook_mlp_out" in str(e.value)  # the list of valid hooks


def test_attention_pattern_hook_is_refused(tmp_path, model_dir, dataset_file):
    cfg = make_config(tmp_path, model_dir, dataset_file, 'hooks=["blocks.0.attn.hook_pattern"]')
    with pytest.raises(ModelError, match="only hooks of shape"):
        generate(cfg)


def test_missing_model_directory(tmp_path, dataset_file):
    cfg = make_config(tmp_path, tmp_path / "no_model", dataset_file)
    with pytest.raises(ModelError, match="no Hugging Face model directory"):
        generate(cfg)


def test_too_little_disk_stops_before_writing(tmp_path, model_dir, dataset_file):
    cfg = make_config(tmp_path, model_dir, dataset_file, "disk_headroom_gb=1e9")
    with pytest.raises(DiskSpaceError, match="GiB free"):
        generate(cfg)
    assert not list((tmp_path / "cache").rglob("*.safetensors"))


def test_disk_estimate_matches_what_is_written(tmp_path, model_dir, dataset_file):
    for layout in ("1d", "2d"):
        cfg = make_config(tmp_path / layout, model_dir, dataset_file, f"layout={layout}")
        estimated = generate(cfg).estimated_bytes
        written = sum(p.stat().st_size for p in cfg.output_dir.rglob("*.safetensors"))
        assert written <= estimated <= written * 1.05


def test_generated_cache_reads_back_through_open_cache(tmp_path, model_dir, dataset_file):
    from lm_saes import open_cache

    cfg = make_config(tmp_path, model_dir, dataset_file)
    generate(cfg)
    hook_dir = tmp_path / "cache" / HOOKS[0]
    cache = open_cache(hook_dir, verify="sha256")
    stored = read_cache(hook_dir)["activations"]
    streamed = torch.cat(list(cache.batches(100, seed=3)))
    assert streamed.shape == stored.shape
    torch.testing.assert_close(streamed.float().sum(0), stored.float().sum(0))
    shard = hook_dir / read_manifest(hook_dir).shards[1].file
    shard.write_bytes(shard.read_bytes()[:-10])  # truncated, e.g. by a full disk
    with pytest.raises(Exception, match=str(shard)):
        open_cache(hook_dir)


@pytest.mark.parametrize("overwrite", ["false", "true"])
def test_a_dictionary_or_model_directory_is_refused_and_stays_loadable(tmp_path, model_dir, dataset_file, capsys,
                                                                       overwrite):
    from lm_saes.cli import main
    from lm_saes.config import TrainConfig
    from lm_saes.dictionaries import Dictionary
    from lm_saes.training.train import train

    sae = tmp_path / "sae"
    train(TrainConfig.model_validate(dict(dictionary={"kind": "topk", "d_sae": 16, "k": 2}, output_dir=sae,
                                          total_tokens=256, batch_size=64, progress=False, device="cpu")),
          batches=[torch.randn(64, 8) for _ in range(4)])
    for target, why in [(sae, "holds a dictionary, not an activation cache"), (model_dir, "no lm-saes stage recorded")]:
        files = {p.name: p.read_bytes() for p in target.iterdir() if p.is_file()}
        code = main(["generate", "--set", f"model.name={model_dir}", "--set", f"data.path={dataset_file}",
                     "--set", f'hooks={json.dumps(HOOKS)}', "--set", f"output_dir={target}",
                     "--set", f"overwrite={overwrite}"])
        err = capsys.readouterr().err
        assert code == 2 and why in err and len(err.strip().splitlines()) == 1
        assert {p.name: p.read_bytes() for p in target.iterdir() if p.is_file()} == files
    Dictionary.from_pretrained(sae)


def test_a_bert_encoder_caches_cls_text_sep_contexts_and_1d_rows_without_them(tmp_path, bert_dir, dataset_file):
    from transformers import BertModel

    tokenizer = AutoTokenizer.from_pretrained(bert_dir)
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    hook = "blocks.1.hook_resid_post"
    base = [f"model.name={bert_dir}", f"data.path={dataset_file}", "data.context_size=16", "data.max_tokens=640",
            f'hooks=["{hook}"]', "progress=false", "disk_headroom_gb=0", "dtype=float32"]
    generate(load_config(GenerateConfig, None, [*base, f"output_dir={tmp_path / '2d'}", "layout=2d"]))
    whole = read_cache(tmp_path / "2d" / hook)
    assert (whole["tokens"][:, 0] == cls).all() and (whole["tokens"][:, -1] == sep).all()
    with torch.no_grad():  # the encoder saw exactly these framed contexts
        hidden = BertModel.from_pretrained(bert_dir).eval()(whole["tokens"].long(), output_hidden_states=True)
    torch.testing.assert_close(whole["activations"], hidden.hidden_states[2], atol=1e-4, rtol=1e-4)
    generate(load_config(GenerateConfig, None, [*base, f"output_dir={tmp_path / '1d'}", "layout=1d"]))
    rows = read_cache(tmp_path / "1d" / hook)["tokens"]
    framing = torch.isin(whole["tokens"], torch.tensor([cls, sep]))
    assert not torch.isin(rows, torch.tensor([cls, sep])).any() and len(rows) == int((~framing).sum())
