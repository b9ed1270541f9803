"""`lm-saes`: a thin command layer over the stage functions (``lm_saes.generate`` and friends).

Every stage takes a TOML config and ``--set key.sub=value`` overrides of any field. Every argument
is checked before any work starts; a bad one is a one-line error and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, NoReturn

from lm_saes.validation import INT64_MAX
from lm_saes.errors import LmSaesError
from lm_saes.store.store import MAX_PAGE


def _pretrain(args: argparse.Namespace) -> None:
    from lm_saes.config import PretrainConfig, load_config
    from lm_saes.models.tiny_lm import pretrain

    result = pretrain(load_config(PretrainConfig, args.config, args.set))
    verb = "reused" if result.reused else "trained"
    print(
        f"{verb} {result.model_dir}: held-out loss {result.val_loss:.3f} nats/token "
        f"(unigram baseline {result.unigram_val_loss:.3f})"
    )


def _generate(args: argparse.Namespace) -> None:
    from lm_saes.activations.generate import generate
    from lm_saes.config import GenerateConfig, load_config

    result = generate(load_config(GenerateConfig, args.config, args.set))
    for hook, path in result.caches.items():
        print(f"{hook}: {result.n_tokens:,} activations in {path}")


def _train(args: argparse.Namespace) -> None:
    from lm_saes.spd.config import SPDTrainConfig, load_train_config
    from lm_saes.training.train import train

    cfg = load_train_config(args.config, args.set)  # an SPD config when it has an [spd] section
    if isinstance(cfg, SPDTrainConfig):
        _train_spd(cfg)
        return
    result = train(cfg)
    m = result.metrics
    print(
        f"{result.output_dir}: explained variance {m['explained_variance']:.3f}, L0 {m['l0']:.1f}, "
        f"dead {m['dead_fraction']:.1%} (last batch; {m['tokens']:,} tokens)"
    )


def _train_spd(cfg) -> None:
    from lm_saes.spd.train import train_spd

    result = train_spd(cfg)
    m = result.metrics
    if not m:  # a torchrun rank other than 0: rank 0 reports
        return
    parts = [f"CI-L0 {m['ci_l0_total']:.2f} over {len(m['ci_l0'])} matrices", f"{m['alive_total']} subcomponents alive",
             f"faithfulness {m['faithfulness']:.3g}"]
    for name in ("mmcs", "ml2r"):
        if name in m:
            parts.append(f"{name.upper()} " + ", ".join(f"{v:.4f}" for v in m[name].values()))
    if "kl_ci_masked" in m:
        parts.append(f"KL {m['kl_ci_masked']:.4f} with CI masks ({m['kl_rounded']:.4f} rounded)")
    if "ce_clean" in m:
        parts.append(f"CE {m['ce_clean']:.4f} -> {m['ce_ci_masked']:.4f}")
    resumed = f", resumed at step {result.resumed_from_step}" if result.resumed_from_step else ""
    print(f"{result.output_dir}: " + "; ".join(parts) + f" ({result.seconds:.0f} s{resumed})")


def _sweep(args: argparse.Namespace) -> None:
    from lm_saes.config import load_config
    from lm_saes.sweep.config import SweepConfig
    from lm_saes.sweep.report import format_table
    from lm_saes.sweep.run import run_sweep

    result = run_sweep(load_config(SweepConfig, args.config, args.set))
    if result is None:  # a torchrun rank other than 0: rank 0 reports
        return
    print(format_table(result.record))
    print(f"\n{len(result.files)} files in {result.output_dir} ({result.seconds:.0f} s): "
          + ", ".join(p.name for p in result.files))
    for name in result.analyzed:
        print(f"analyzed into the store: {name} (lm-saes show {name})")
    print(f"browse it: lm-saes serve, then open /sweeps/{result.record['name']}")


def _toy(args: argparse.Namespace) -> None:
    from lm_saes.config import load_config
    from lm_saes.toys.config import ToyTrainConfig
    from lm_saes.toys.train import train_toy

    result = train_toy(load_config(ToyTrainConfig, args.config, args.set))
    m = result.metrics
    verb = "reused" if result.reused else "trained"
    if result.resumed_from_step:
        verb = f"resumed at step {result.resumed_from_step} and trained"
    scores = ", ".join(f"{k} {v:.4g}" for k, v in m.items() if k.startswith(("train_", "test_")))
    print(f"{verb} {result.output_dir}: {scores}")


def _llc(args: argparse.Namespace) -> None:
    from lm_saes.config import load_config
    from lm_saes.llc.config import LLCConfig
    from lm_saes.llc.stage import describe, run_llc

    overrides = [*args.set, *(["checkpoints=true"] if args.checkpoints else [])]
    result = run_llc(load_config(LLCConfig, args.config, overrides))
    print(describe(result))


def _eval(args: argparse.Namespace) -> None:
    from lm_saes.config import EvalConfig, load_config
    from lm_saes.evaluation.run import evaluate
    from lm_saes.spd.directory import is_decomposition

    if is_decomposition(args.dictionary):
        from lm_saes.spd.config import SPDEvalConfig
        from lm_saes.spd.evaluate import describe, evaluate_directory

        spd = load_config(SPDEvalConfig, args.config, [f"decomposition={args.dictionary}", *args.set])
        results = evaluate_directory(spd)
        print(f"{spd.decomposition}  ({results['examples']:,} examples)")
        print("\n".join(describe(results)))
        return

    cfg = load_config(EvalConfig, args.config, [f"dictionary={args.dictionary}", *args.set])
    results = evaluate(cfg)
    print(f"{cfg.dictionary}  ({results['tokens']:,} tokens)")
    for key, value in results.items():
        if isinstance(value, float):
            print(f"  {key:<20} {value:>12.4f}")
    counts = results["density_histogram"]["counts"]
    print(f"  density histogram    {counts} (+{results['density_histogram']['dead']} dead)")


def _compare(args: argparse.Namespace) -> None:
    from lm_saes.compare.config import CompareConfig
    from lm_saes.compare.stage import compare_runs, describe
    from lm_saes.config import load_config

    result = compare_runs(load_config(CompareConfig, args.config, [f"a={args.a}", f"b={args.b}", *args.set]))
    print(f"A = {result.record['a']}\nB = {result.record['b']}")
    print("\n".join(describe(result.record)))
    print(f"written: {', '.join(str(p) for p in result.files)}")


def _analyze(args: argparse.Namespace) -> None:
    from lm_saes.analysis.stage import run_analysis
    from lm_saes.config import AnalyzeConfig, load_config

    result = run_analysis(load_config(AnalyzeConfig, args.config, args.set))
    summary = result.summary
    print(
        f"analysis '{result.analysis}' of '{result.dictionary}' stored: {result.n_features:,} features over "
        f"{summary['n_tokens']:,} tokens ({summary['alive_fraction']:.1%} alive)\n"
        f"look at it: lm-saes show {result.dictionary}            (the densest features)\n"
        f"            lm-saes show {result.dictionary} INDEX      (one feature's top contexts)"
    )


def _interpret(args: argparse.Namespace) -> None:
    from lm_saes.config import load_config
    from lm_saes.interpret.config import InterpretConfig
    from lm_saes.interpret.report import format_comparison
    from lm_saes.interpret.stage import run_interpret

    cfg = load_config(InterpretConfig, args.config, [*args.set, *(["dry_run=true"] if args.dry_run else [])])
    outcome = run_interpret(cfg)
    for r in outcome.results:
        who = "the lexical baseline (no model)" if r.kind == "lexical" else f"{r.explainer}"
        if r.dry_run:
            print(f"dry run: {r.n_features - r.n_done_before:,} of {r.n_features:,} features of {r.dictionary!r} to "
                  f"interpret with {who} ({r.n_done_before:,} done before): {r.n_requests:,} requests, about "
                  f"{r.n_prompt_tokens:,} prompt tokens (characters / 4); nothing was sent")
            continue
        means = ", ".join(f"{s} {m['mean']:.3f} [{m['low']:.3f}, {m['high']:.3f}]" for s, m in r.means.items())
        print(f"{r.dictionary}: {r.n_scored:,} features scored and {r.n_failed:,} failed now, {r.n_done_before:,} "
              f"done before, by {who} as {r.explainer!r}; {r.n_requests:,} requests, {r.seconds:.0f} s\n"
              f"  mean (95% CI) over its scored features: {means or 'none yet'}")
    if outcome.report:
        print("\n" + format_comparison(outcome.report))
        print(f"report: {', '.join(str(p) for p in outcome.files)}")


def _show(args: argparse.Namespace) -> None:
    from lm_saes.analysis.show import render_feature, render_list
    from lm_saes.config import StoreConfig, load_config
    from lm_saes.errors import LmSaesError
    from lm_saes.store import open_store

    name = args.dictionary
    with open_store(load_config(StoreConfig, None, args.set), create=False) as store:
        if store.dictionary(name) is None:
            known = ", ".join(d["name"] for d in store.dictionaries()) or "none yet (run lm-saes analyze)"
            raise LmSaesError(f"no dictionary {name!r} in the store; stored: {known}")
        if args.feature is None:
            features = store.features(name, args.analysis, sort="density", descending=True, limit=args.limit)
            print(render_list(features, name, store.count_features(name, args.analysis)))
            return
        doc = store.feature(name, args.feature, args.analysis)
    if doc is None:
        raise LmSaesError(f"{name!r} has no feature {args.feature} in analysis {args.analysis!r}")
    color = args.color == "always" or (args.color == "auto" and sys.stdout.isatty())
    print(render_feature(doc, name, args.contexts, color))


def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    from lm_saes.config import ServeConfig, load_config
    from lm_saes.server import create_app

    overrides = [f"host={args.host}"] * (args.host is not None) + [f"port={args.port}"] * (args.port is not None)
    cfg = load_config(ServeConfig, args.config, [*overrides, *args.set])
    app = create_app(cfg.store, cfg.static_dir, cfg.device)
    host = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
    print(f"lm-saes: serving http://{host}:{cfg.port}/  (API docs: http://{host}:{cfg.port}/api/docs)", flush=True)
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="info")


def _export(args: argparse.Namespace) -> None:
    import json

    from lm_saes.dictionaries.saelens import SAELENS_CFG, export_saelens

    out = export_saelens(args.dictionary, args.out_dir, overwrite=args.overwrite)
    architecture = json.loads((out / SAELENS_CFG).read_text())["architecture"]
    print(f"{out}: SAELens '{architecture}' dictionary (load with sae_lens.SAE.load_from_disk)")


def _hooks(args: argparse.Namespace) -> None:
    from lm_saes.config import ModelConfig
    from lm_saes.models.backend import PROBE_CTX, load_language_model

    lm = load_language_model(ModelConfig(name=args.model, device=args.device))
    gated = {name: lm.gate_of(name) for name in lm.hook_names()}
    print(f"hook point shapes for a batch of 1 context of {PROBE_CTX} tokens ([1, {PROBE_CTX}, d] can be cached):")
    shapes = lm.hook_shapes([n for n, g in gated.items() if g is None])
    for name, shape in shapes.items():
        print(f"  {name}  {list(shape)}")
    silent = [n for n, g in gated.items() if g is None and n not in shapes]
    if silent:
        print("never fire in this model's forward:\n  " + "\n  ".join(silent))
    print("computed on request (the bridge setting is switched on when you ask for them):")
    for name, setting in gated.items():
        if setting is not None:
            print(f"  {name}  ({setting})")


COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], None], str]] = {
    "pretrain": (_pretrain, "train a BPE tokenizer and a tiny GPT-2 on offline English text"),
    "generate": (_generate, "run a model over a text dataset and write an activation cache"),
    "train": (_train, "train a sparse dictionary (SAE or transcoder) on an activation cache, or an SPD "
              "decomposition of a model's parameters (a config with [spd])"),
    "sweep": (_sweep, "train many dictionaries over one read of a cache, with baselines and a Pareto table "
              "(or many SPD decompositions of one target: a base train config with [spd])"),
    "analyze": (_analyze, "compute every feature's statistics from a 2d cache into the store (or an SPD "
                          "decomposition's subcomponents on its target's inputs)"),
    "toy": (_toy, "train a toy model with ground truth (modular addition, ...) into a toy directory"),
}


class _Parser(argparse.ArgumentParser):
    """argparse, with a bad argument reported on one line (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def _int_in(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high]."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text[:40]!r} is not an integer") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is outside [{low}, {high}]")
        return value

    return parse


def _stored_name(text: str) -> str:
    """An argparse type: a dictionary or analysis name as the store keeps them."""
    from lm_saes.validation import name_problem, value_problems

    problem = next(iter(value_problems(text, "name.")), None) or name_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lm-saes", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (run, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("config", nargs="?", help="TOML config file (optional: fields may all come from --set)")
        p.add_argument(
            "--set", action="append", default=[], metavar="KEY=VALUE",
            help="override a config field, e.g. --set model.dtype=bfloat16 (repeatable)",
        )
        p.set_defaults(run=run)
    p = sub.add_parser("llc", help="local learning coefficient of a toy, language model or dictionary (SGLD)")
    p.add_argument("config", nargs="?", help="TOML config file (see LLCConfig; fields may all come from --set)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set sgld.step_size=1e-4 (repeatable)")
    p.add_argument("--checkpoints", action="store_true",
                   help="estimate at every saved checkpoint of a toy's training and plot it beside the losses")
    p.set_defaults(run=_llc)
    p = sub.add_parser("eval", help="metrics of a trained dictionary or SPD decomposition (written to its metrics.json)")
    p.add_argument("dictionary", help="dictionary or decomposition directory")
    p.add_argument("--config", help="TOML file of eval settings (see EvalConfig, or SPDEvalConfig for a decomposition)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting")
    p.set_defaults(run=_eval)
    p = sub.add_parser("compare", help="how alike two runs are: each direction's best match in the other, MMCS both "
                       "ways (two dictionaries, or two SPD decompositions of one model)")
    p.add_argument("a", help="dictionary or decomposition directory")
    p.add_argument("b", help="another of the same kind")
    p.add_argument("--config", help="TOML file of compare settings (see lm_saes/compare/config.py)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a setting, e.g. --set live_only=true --set ci_threshold=0.1 (repeatable)")
    p.set_defaults(run=_compare)
    p = sub.add_parser("export", help="write a dictionary in another toolkit's layout (SAELens)")
    p.add_argument("dictionary", help="dictionary directory")
    p.add_argument("out_dir", help="directory to write (cfg.json + sae_weights.safetensors)")
    p.add_argument("--format", choices=["saelens"], default="saelens", help="target layout")
    p.add_argument("--overwrite", action="store_true", help="replace an export already in out_dir")
    p.set_defaults(run=_export)
    p = sub.add_parser("interpret", help="explain and score the features of an analyzed dictionary "
                       "(an OpenAI-compatible endpoint, or offline the lexical baseline)")
    p.add_argument("config", nargs="?", help="TOML config file (see lm_saes/interpret/config.py)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set dictionary=topk (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="count the requests and prompt tokens, send nothing")
    p.set_defaults(run=_interpret)
    p = sub.add_parser("show", help="print a stored feature's top contexts (or the densest features)")
    p.add_argument("dictionary", type=_stored_name, help="dictionary name in the store (its directory's name by default)")
    p.add_argument("feature", nargs="?", type=_int_in(0, INT64_MAX), help="feature index (omit for a list)")
    p.add_argument("--analysis", type=_stored_name, default="default", help="analysis name")
    p.add_argument("--contexts", type=_int_in(0, 10_000), default=10, help="top contexts to print")
    p.add_argument("--limit", type=_int_in(1, MAX_PAGE), default=20, help=f"features listed when no index is given (1 to {MAX_PAGE})")
    p.add_argument("--color", choices=["auto", "always", "never"], default="auto", help="ANSI highlighting")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a store setting, e.g. --set mongo_uri=mongodb://localhost:27017")
    p.set_defaults(run=_show)
    p = sub.add_parser("serve", help="serve the store's features over HTTP: the API and the web UI")
    p.add_argument("config", nargs="?", help="TOML file of serve settings (see ServeConfig)")
    p.add_argument("--host", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=_int_in(1, 65535), help="port (default 8000)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a setting, e.g. --set store.mongo_uri=mongodb://localhost:27017 (repeatable)")
    p.set_defaults(run=_serve)
    p = sub.add_parser("hooks", help="list a model's hook points and their shapes")
    p.add_argument("model", help="hub name or local Hugging Face directory")
    p.add_argument("--device", default="auto")
    p.set_defaults(run=_hooks)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help (0), or a bad argument already reported on one line (2)
        return e.code if isinstance(e.code, int) else 2
    try:
        args.run(args)
    except LmSaesError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
