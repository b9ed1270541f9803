#!/usr/bin/env bash
# The whole pipeline on this machine: set up, train (or reuse) the tiny language model, cache
# its activations, train and evaluate a TopK SAE, analyze its features into the embedded store
# and explain and score them (the offline lexical baseline). Everything lands in ./work/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/ui.sh   # the web UI (node builds it once; lm-saes serve needs no node)
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
LM=".venv/bin/lm-saes"
$LM pretrain examples/tiny_lm.toml
$LM generate examples/generate.toml
$LM generate examples/generate_2d.toml
$LM train examples/train_topk.toml --set overwrite=true
$LM eval work/dictionaries/topk
$LM analyze examples/analyze.toml
$LM interpret examples/interpret.toml
$LM show topk --limit 5
cat <<'MSG'

Done. What you have in ./work:
  work/tiny_lm/                      a GPT-2-style model + BPE tokenizer (Hugging Face layout)
  work/cache/<hook>/                 1d activation cache (shuffled tokens) for training
  work/cache_2d/<hook>/              2d activation cache (whole contexts) for analysis
  work/dictionaries/topk/            a TopK SAE (config.json, weights.safetensors, train_log.jsonl,
                                     metrics.json: the table above)
  work/store/                        the embedded MongoDB-protocol store with every feature's analysis
                                     and its explanation and scores (the lexical baseline)
Browse the features in your browser (the embedded store starts and stops with the server):
  .venv/bin/lm-saes serve                then open http://127.0.0.1:8000  (Ctrl-C stops it)
or in the terminal:
  .venv/bin/lm-saes show topk            the densest features
  .venv/bin/lm-saes show topk 7          feature 7's top contexts, tokens highlighted
Other variants: .venv/bin/lm-saes train examples/train_{relu,batchtopk,jumprelu,transcoder}.toml
Explanations written by a language model (any OpenAI-compatible endpoint), counted first:
  .venv/bin/lm-saes interpret examples/interpret_openai.toml --dry-run
A sweep (6 dictionaries over one read of the cache, PCA/ICA/neuron/random baselines, Pareto plots;
about 2 minutes): .venv/bin/lm-saes sweep examples/sweep.toml    then open /sweeps/quickstart-sweep
Read a cache in Python:
  .venv/bin/python -c "from lm_saes import open_cache; c = open_cache('work/cache/blocks.1.hook_resid_post'); print(c.manifest.n_tokens, next(c.batches(4096)).shape)"
MSG
