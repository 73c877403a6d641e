#!/usr/bin/env bash
# How the bundled default models were made, step by step (each step resumes with --resume).
# Two pretraining stages of about 1 h each per model on 2 cores (both models in parallel, 1 thread
# each), a third hour for the MLM alone, then about 10 min for MARIA's head. Run from the repository
# root after `npm ci && npm run build`.
set -euo pipefail
maria="node dist/cli/main.js"

# 1. Tokenizer (seconds): byte-level BPE, 8192 tokens, on the training split.
$maria tokenizer train --vocab-size 8192 --out models/default/tokenizer

# 2. Pretraining, in parallel: a Llama-architecture causal LM and a ModernBERT-architecture masked
#    LM (masked-diffusion objective: per sequence r ~ U(0,1)).
common="--steps 1600 --batch 16 --seq-len 256 --lr 2e-3 --warmup 150 --validate-every 200 --checkpoint-every 100 --threads 1 --max-minutes 100 --no-progress"
ar_cmd="pretrain --preset default-ar --out runs/default-ar --seed 0 $common"
mlm_cmd="pretrain --preset default-mlm --out runs/default-mlm --seed 1 $common"
mkdir -p runs
$maria $ar_cmd > runs/default-ar.log 2>&1 &
$maria $mlm_cmd > runs/default-mlm.log 2>&1 &
wait

# 3. The exported HF folders become the bundle's models (training state stays in runs/).
for m in ar mlm; do
  mkdir -p models/default/$m
  cp runs/default-$m/{config.json,model.safetensors,tokenizer.json,tokenizer_config.json,special_tokens_map.json} models/default/$m/
done

# 3b. Stage 2: both continued from stage 1's weights (fresh AdamW state and schedule, lower peak
#     learning rate); the MLM now with the MDLM objective (each sequence weighted 1/r, so sequences
#     with few masks count as much as heavily masked ones).
ar2_cmd="pretrain --config models/default/ar/config.json --init-from models/default/ar --out runs/ar-cont --steps 2400 --batch 16 --seq-len 256 --lr 1e-3 --warmup 100 --seed 10 --validate-every 200 --checkpoint-every 100 --threads 1 --max-minutes 120 --no-progress"
mlm2_cmd="pretrain --config models/default/mlm/config.json --init-from models/default/mlm --out runs/mlm-cont --objective mdlm --steps 2000 --batch 16 --seq-len 256 --lr 1e-3 --warmup 100 --seed 11 --validate-every 200 --checkpoint-every 100 --threads 1 --max-minutes 120 --no-progress"
$maria $ar2_cmd > runs/ar-cont.log 2>&1 &
$maria $mlm2_cmd > runs/mlm-cont.log 2>&1 &
wait
for m in ar mlm; do
  cp runs/$m-cont/{config.json,model.safetensors} models/default/$m/
done

# 3c. Stage 3, the MLM only: its validation loss was still falling, and at 15 % masked it had not yet
#     beaten a two-sided bigram (one more hour, the same objective, a lower peak learning rate).
mlm3_cmd="pretrain --config models/default/mlm/config.json --init-from models/default/mlm --out runs/mlm-stage3 --objective mdlm --steps 1500 --batch 16 --seq-len 256 --lr 5e-4 --warmup 50 --seed 12 --validate-every 250 --checkpoint-every 100 --threads 1 --max-minutes 60 --no-progress"
$maria $mlm3_cmd > runs/mlm-stage3.log 2>&1
cp runs/mlm-stage3/{config.json,model.safetensors} models/default/mlm/

# 4. MARIA's head over the frozen pair, written into the bundle (head stored as F16).
# Trained on text the backbones never saw (the corpus' held-out split), so it learns how far to trust
# each backbone on unfamiliar text, not on text they memorised; early-stopped on e-mail prose, a
# domain neither the backbones nor the head train on, at the step that gains most over the product
# of experts on its worst mask rate. (A head trained on the backbones' own training text, 2000 steps,
# fits their memorised features and that domain: it lost to the product of experts on Brown and on
# e-mail at low mask rates; see the issue notes.)
$maria train-head --mlm models/default/mlm --ar models/default/ar --data corpus-heldout \
  --validation-data emails-heldout --out models/default --keep-best worst-rate \
  --steps 300 --batch 16 --length 128 --mask-samples 4 --lr 3e-5 --warmup 20 --seed 0 \
  --validate-every 20 --checkpoint-every 100 --validation-windows 128 --head-dtype F16 --threads 2 --no-progress

# 5. Model cards: Brown perplexities against a Kneser-Ney bigram, samples.
$maria evaluate-models --ar models/default/ar --mlm models/default/mlm --n 200 --length 128 --seed 0 --threads 1 --cards \
  --ar-run runs/default-ar --ar-command "maria $ar_cmd" --ar-run runs/ar-cont --ar-command "maria $ar2_cmd" \
  --mlm-run runs/default-mlm --mlm-command "maria $mlm_cmd" --mlm-run runs/mlm-cont --mlm-command "maria $mlm2_cmd" \
  --mlm-run runs/mlm-stage3 --mlm-command "maria $mlm3_cmd"

# 6. The scorer (generative perplexity in `maria eval` only): the same recipe, another seed.
scorer_cmd="pretrain --preset default-ar --out runs/scorer --seed 7 ${common/--threads 1 --max-minutes 100/--threads 2 --max-minutes 58}"
$maria $scorer_cmd > runs/scorer.log 2>&1
mkdir -p models/scorer
cp runs/scorer/{config.json,model.safetensors,tokenizer.json,tokenizer_config.json,special_tokens_map.json} models/scorer/
$maria evaluate-models --ar models/scorer --mlm models/default/mlm --n 200 --length 128 --seed 0 --threads 2 --cards \
  --ar-run runs/scorer --ar-command "maria $scorer_cmd" \
  --mlm-run runs/default-mlm --mlm-command "maria $mlm_cmd" --mlm-run runs/mlm-cont --mlm-command "maria $mlm2_cmd" \
  --mlm-run runs/mlm-stage3 --mlm-command "maria $mlm3_cmd"
git checkout models/default/mlm/README.md   # the MLM's card is the one written in step 5
# (The scorer card's title and first paragraph, which call it the default AR, were then edited by hand.)
