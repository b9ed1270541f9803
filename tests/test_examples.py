"""Every config in examples/ validates and runs (scaled down to test-sized models and data)."""

from pathlib import Path

import pytest

from lm_saes.activations.generate import generate
from lm_saes.activations.manifest import read_manifest
from lm_saes.config import AnalyzeConfig, EvalConfig, GenerateConfig, PretrainConfig, TrainConfig, load_config
from lm_saes.dictionaries import Dictionary
from lm_saes.llc.config import LLCConfig
from lm_saes.interpret.config import InterpretConfig
from lm_saes.spd.config import SPDTrainConfig
from lm_saes.sweep.config import SweepConfig
from lm_saes.toys.config import ToyTrainConfig

EXAMPLES = Path(__file__).parent.parent / "examples"
TRAIN_EXAMPLES = [f"train_{v}.toml" for v in ("topk", "batchtopk", "relu", "jumprelu", "transcoder")]
TOY_EXAMPLES = [f"toy_modular_addition{v}.toml" for v in ("", "_weight_decay", "_random_labels")]
LLC_EXAMPLES = [f"llc_{v}.toml" for v in ("modular_addition", "tiny_lm", "dictionary")]
SPD_TOYS = {  # SPD example -> (the toy example it decomposes, scaling of both to test size)
    "spd_tms_5-2.toml": ("toy_tms_5-2.toml", [], []),
    "spd_tms_40-10.toml": ("toy_tms_40-10.toml", [], ["spd.C=16"]),
    "spd_resid_mlp1.toml": ("toy_resid_mlp1.toml", ["toy.n_features=20", "toy.d_embed=64", "toy.d_mlp=8"],
                            ["spd.C=16"]),
    "spd_induction.toml": ("toy_induction.toml", [], ["spd.C=8"]),
}
STAGE_OF = {
    "tiny_lm.toml": PretrainConfig, "generate.toml": GenerateConfig, "generate_2d.toml": GenerateConfig,
    **{name: TrainConfig for name in TRAIN_EXAMPLES}, "analyze.toml": AnalyzeConfig, "sweep.toml": SweepConfig,
    **{name: ToyTrainConfig for name in TOY_EXAMPLES}, **{name: LLCConfig for name in LLC_EXAMPLES},
    "interpret.toml": InterpretConfig, "interpret_openai.toml": InterpretConfig,  # the second: tests/interpret
    **{toy: ToyTrainConfig for toy, _, _ in SPD_TOYS.values()},
    **{name: SPDTrainConfig for name in SPD_TOYS}, "spd_tiny_lm.toml": SPDTrainConfig,
    "analyze_spd_tms_5-2.toml": AnalyzeConfig, "analyze_spd_tiny_lm.toml": AnalyzeConfig,
    "generate_superposition.toml": GenerateConfig, "replicate_superposition.toml": SweepConfig,  # tests/sweep
    "spd_sweep_tms.toml": SweepConfig,
}
SMALL_SGLD = ["sgld.draws=6", "sgld.chains=2", "progress=false"]


def test_every_example_is_registered_and_valid():
    assert {p.name for p in EXAMPLES.glob("*.toml")} == set(STAGE_OF)
    for name, stage in STAGE_OF.items():
        load_config(stage, EXAMPLES / name)


@pytest.mark.parametrize("name", ["generate.toml", "generate_2d.toml"])
def test_generate_examples_run(name, tmp_path, model_dir, dataset_file):
    cfg = load_config(GenerateConfig, EXAMPLES / name, [
        f"model.name={model_dir}", f"data.path={dataset_file}", "data.context_size=32",
        "data.max_tokens=2048", f"output_dir={tmp_path}", "progress=false",
    ])
    result = generate(cfg)
    for hook, path in result.caches.items():
        assert read_manifest(path).layout == cfg.layout


@pytest.fixture(scope="module")
def example_cache(tmp_path_factory, model_dir, dataset_file) -> Path:
    """examples/generate.toml, scaled down: the cache the train examples read."""
    root = tmp_path_factory.mktemp("cache")
    cfg = load_config(GenerateConfig, EXAMPLES / "generate.toml", [
        f"model.name={model_dir}", f"data.path={dataset_file}", "data.context_size=32",
        "data.max_tokens=8192", f"output_dir={root}", "progress=false", "disk_headroom_gb=0",
    ])
    generate(cfg)
    return root


@pytest.mark.parametrize("name", TRAIN_EXAMPLES)
def test_train_examples_run_and_evaluate(name, tmp_path, example_cache):
    from lm_saes.evaluation.run import evaluate
    from lm_saes.training.train import train

    original = load_config(TrainConfig, EXAMPLES / name)
    moved = lambda p: example_cache / Path(p).name if p else None  # work/cache/<hook> -> the test cache
    cfg = load_config(TrainConfig, EXAMPLES / name, [
        f"cache={moved(original.cache)}", f"output_dir={tmp_path / 'dict'}", "total_tokens=4096",
        "batch_size=512", "log_every=4", "progress=false", "dictionary.d_sae=64",
        *([f"target_cache={moved(original.target_cache)}"] if original.target_cache else []),
    ])
    result = train(cfg)
    loaded = Dictionary.from_pretrained(result.output_dir)
    assert loaded.d_sae == 64 and loaded.transcoder == (original.target_cache is not None)
    metrics = evaluate(EvalConfig(dictionary=result.output_dir, tokens=1024, batch_size=512, ce_tokens=0, device="cpu"))
    assert metrics["tokens"] == 1024 and 0 <= metrics["alive_fraction"] <= 1


def test_analyze_example_runs_into_the_embedded_store(tmp_path, example_cache, model_dir, dataset_file, monkeypatch):
    from lm_saes.analysis.stage import run_analysis
    from lm_saes.store import open_store
    from lm_saes.training.train import train

    monkeypatch.delenv("MONGO_URI", raising=False)
    generate(load_config(GenerateConfig, EXAMPLES / "generate_2d.toml", [
        f"model.name={model_dir}", f"data.path={dataset_file}", "data.context_size=32",
        "data.max_tokens=2048", f"output_dir={tmp_path / 'cache_2d'}", "progress=false",
    ]))
    hook = load_config(AnalyzeConfig, EXAMPLES / "analyze.toml").cache.name
    train(load_config(TrainConfig, EXAMPLES / "train_topk.toml", [
        f"cache={example_cache / hook}", f"output_dir={tmp_path / 'topk'}", "total_tokens=2048",
        "batch_size=512", "progress=false", "dictionary.d_sae=64",
    ]))
    cfg = load_config(AnalyzeConfig, EXAMPLES / "analyze.toml", [
        f"dictionary={tmp_path / 'topk'}", f"cache={tmp_path / 'cache_2d' / hook}",
        f"store.data_dir={tmp_path / 'store'}", "progress=false",
    ])
    stored = run_analysis(cfg)
    with open_store(cfg.store) as store:
        assert store.count_features(stored.dictionary) == 64 == stored.n_features

    from lm_saes.interpret.stage import run_interpret  # examples/interpret.toml on what the analyze example stored

    explained = run_interpret(load_config(InterpretConfig, EXAMPLES / "interpret.toml", [
        f"dictionary={stored.dictionary}", f"store.data_dir={tmp_path / 'store'}", "progress=false", "device=cpu",
    ])).results[0]
    assert explained.kind == "lexical" and explained.n_scored + explained.n_failed == explained.n_features > 0


@pytest.mark.slow
def test_tiny_lm_example_runs(tmp_path, text_docs):
    from lm_saes.models.tiny_lm import pretrain

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("\n\n".join(text_docs[:20]))
    cfg = load_config(PretrainConfig, EXAMPLES / "tiny_lm.toml", [
        f"output_dir={tmp_path / 'lm'}", f"corpus={corpus}", "steps=3", "d_model=32", "n_layer=1",
        "vocab_size=300", "context_size=32", "batch_size=4",
    ])
    result = pretrain(cfg)
    assert (result.model_dir / "config.json").is_file() and result.steps == 3


@pytest.mark.slow
def test_sweep_example_runs_and_writes_the_table_and_plots(tmp_path, example_cache, model_dir, dataset_file,
                                                           monkeypatch):
    from lm_saes.store import open_store, stop_server
    from lm_saes.sweep.run import run_sweep

    monkeypatch.delenv("MONGO_URI", raising=False)
    generate(load_config(GenerateConfig, EXAMPLES / "generate_2d.toml", [
        f"model.name={model_dir}", f"data.path={dataset_file}", "data.context_size=32",
        "data.max_tokens=1024", f"output_dir={tmp_path / 'cache_2d'}", "progress=false",
    ]))
    original = load_config(SweepConfig, EXAMPLES / "sweep.toml")
    hook = original.train["cache"].split("/")[-1]
    small = [f"variants.{v}.set.dictionary.d_sae=64" for v in original.variants]
    cfg = load_config(SweepConfig, EXAMPLES / "sweep.toml", [
        f"train.cache={example_cache / hook}", f"output_dir={tmp_path / 'sweep'}", f"store.data_dir={tmp_path / 'store'}",
        "train.total_tokens=2048", "train.batch_size=256", "progress=false", "eval.tokens=1024",
        "eval.ce_tokens=0", "eval.device=cpu", "train.device=cpu", "baselines=['pca', 'neurons']", *small,
        f"analyze.settings.cache={tmp_path / 'cache_2d' / hook}", "analyze.settings.device=cpu",
    ])
    try:
        result = run_sweep(cfg)
        members = [r for r in result.record["rows"] if r["kind"] == "member"]
        assert len(members) == 6 and all(r["status"] == "finished" for r in members)
        assert {p.name for p in result.files} == {"results.json", "results.csv", "pareto_explained_variance.png",
                                                  "pareto_explained_variance.html"}
        assert result.analyzed == ["quickstart-sweep.topk-k32"]
        with open_store(cfg.store) as store:
            assert store.sweep("quickstart-sweep")["rows"] == result.record["rows"]
            assert store.analysis("quickstart-sweep.topk-k32")["n_features"] == 64
    finally:
        stop_server(tmp_path / "store")


@pytest.mark.parametrize("name", TOY_EXAMPLES)
def test_toy_examples_run_and_the_llc_example_follows_their_checkpoints(name, tmp_path):
    from lm_saes.llc.stage import run_llc
    from lm_saes.toys.train import train_toy

    toy = train_toy(load_config(ToyTrainConfig, EXAMPLES / name, [
        f"output_dir={tmp_path / 'toy'}", "steps=20", "toy.p=11", "checkpoint_every=10", "log_every=10",
        "progress=false",
    ]))
    assert toy.metrics["steps"] == 20
    if name == TOY_EXAMPLES[0]:  # the LLC example reads this one
        result = run_llc(load_config(LLCConfig, EXAMPLES / "llc_modular_addition.toml", [
            f"model={toy.output_dir}", "sgld.batch_size=16", "checkpoints=true", *SMALL_SGLD,
        ]))
        assert [row["step"] for row in result.record["checkpoints"]] == [0, 10, 20]


def test_llc_tiny_lm_example_runs(tmp_path, model_dir, dataset_file):
    from lm_saes.llc.stage import run_llc

    result = run_llc(load_config(LLCConfig, EXAMPLES / "llc_tiny_lm.toml", [
        f"model={model_dir}", f"data.path={dataset_file}", "data.context_size=32", "data.max_tokens=1024",
        f"output_dir={tmp_path / 'llc'}", "sgld.batch_size=2", *SMALL_SGLD,
    ]))
    assert result.record["kind"] == "language_model" and len(result.record["llc"]["per_chain"]) == 2


def test_llc_dictionary_example_runs(tmp_path, example_cache):
    from lm_saes.llc.stage import run_llc
    from lm_saes.training.train import train

    hook = load_config(AnalyzeConfig, EXAMPLES / "analyze.toml").cache.name
    topk = train(load_config(TrainConfig, EXAMPLES / "train_topk.toml", [
        f"cache={example_cache / hook}", f"output_dir={tmp_path / 'topk'}", "total_tokens=2048",
        "batch_size=512", "progress=false", "dictionary.d_sae=64",
    ])).output_dir
    result = run_llc(load_config(LLCConfig, EXAMPLES / "llc_dictionary.toml", [
        f"model={topk}", "sgld.batch_size=256", *SMALL_SGLD,
    ]))
    assert result.record["kind"] == "dictionary" and (topk / "llc" / "llc.json").is_file()


@pytest.mark.parametrize("name", SPD_TOYS)
def test_toy_examples_train_and_their_spd_examples_decompose_them(name, tmp_path, monkeypatch):
    from lm_saes.spd.train import train_spd
    from lm_saes.toys.train import train_toy

    toy_example, toy_scale, spd_scale = SPD_TOYS[name]
    toy = train_toy(load_config(ToyTrainConfig, EXAMPLES / toy_example, [
        f"output_dir={tmp_path / 'toy'}", "steps=10", "batch_size=64", "toy.n_train=128", "toy.n_test=128",
        "progress=false", *toy_scale]))
    assert toy.metrics["steps"] == 10
    result = train_spd(load_config(SPDTrainConfig, EXAMPLES / name, [
        f"target.path={toy.output_dir}", f"output_dir={tmp_path / 'spd'}", "steps=4", "batch_size=32", "log_every=2",
        "spd.faithfulness_warmup_steps=2", "eval_examples=64", "progress=false", "device=cpu", *spd_scale]))
    assert result.metrics["alive_total"] >= 0 and set(result.metrics["ci_l0"]) and result.metrics["examples"] == 64
    if name == "spd_tms_5-2.toml":  # examples/analyze_spd_tms_5-2.toml on it
        from lm_saes.analysis.stage import run_analysis

        monkeypatch.delenv("MONGO_URI", raising=False)
        stored = run_analysis(load_config(AnalyzeConfig, EXAMPLES / "analyze_spd_tms_5-2.toml", [
            f"dictionary={result.output_dir}", "target_inputs=256", f"store.data_dir={tmp_path / 'store'}",
            "progress=false", "device=cpu"]))
        assert stored.n_features == 40 and stored.summary["kind"] == "decomposition"


def test_spd_sweep_example_runs_on_the_tms_example(tms_5_2_dir, tmp_path):
    from lm_saes.sweep.run import run_sweep

    original = load_config(SweepConfig, EXAMPLES / "spd_sweep_tms.toml")
    toy = load_config(ToyTrainConfig, EXAMPLES / "toy_tms_5-2.toml")
    assert original.train["target"]["path"] == toy.output_dir.as_posix()  # the sweep decomposes the toy example
    result = run_sweep(load_config(SweepConfig, EXAMPLES / "spd_sweep_tms.toml", [
        f"train.target.path={tms_5_2_dir}", f"output_dir={tmp_path / 'sweep'}", "record=false", "progress=false",
        "train.steps=6", "train.batch_size=64", "train.spd.faithfulness_warmup_steps=2", "train.eval_examples=64",
        "train.device=cpu"]))
    members = result.record["rows"]
    assert len(members) == 8 and all(r["status"] == "finished" and "mmcs" in r["metrics"] for r in members)
    assert {"pareto_reconstruction.png", "heatmap_spd_mmcs.png"} <= {p.name for p in result.files}


def test_spd_tiny_lm_example_runs(tmp_path, model_dir, dataset_file, monkeypatch):
    from lm_saes.spd.train import train_spd

    result = train_spd(load_config(SPDTrainConfig, EXAMPLES / "spd_tiny_lm.toml", [
        f"target.model.name={model_dir}", f"target.data.path={dataset_file}", "target.data.context_size=32",
        "target.data.max_tokens=2048", f"output_dir={tmp_path / 'spd'}", "steps=2", "batch_size=2", "spd.C=4",
        "spd.faithfulness_warmup_steps=2", "eval_examples=4", "eval_batch_size=2", "progress=false", "device=cpu"]))
    assert len(result.metrics["ci_l0"]) == 12 and result.metrics["ce_clean"] > 0  # 3 layers x 4 projections
    from lm_saes.analysis.stage import run_analysis  # examples/analyze_spd_tiny_lm.toml on it

    monkeypatch.delenv("MONGO_URI", raising=False)
    stored = run_analysis(load_config(AnalyzeConfig, EXAMPLES / "analyze_spd_tiny_lm.toml", [
        f"dictionary={result.output_dir}", "target_inputs=4", f"store.data_dir={tmp_path / 'store'}",
        "progress=false", "device=cpu"]))
    assert stored.n_features == 48 and stored.summary["n_contexts"] == 4
