"""Character language models on tiny-shakespeare: nanoGPT's character Transformer and
char-rnn-style recurrent LMs (LSTM, GRU, Elman) at similar parameter counts.

Command:  python -m experiments.char_lm --config=experiments/char_lm.py:transformer_cpu \\
              --config.data.manual_dir=../shared/data
          (variants: transformer_cpu (default) | transformer | lstm | gru | elman, each
          with ,smoke for a seconds-long run)
          python -m experiments.char_lm --config.sample_from=WORKDIR --config.prompt="ROMEO:"
          samples from a trained run (--config.temperature, --config.top_k,
          --config.sample_length, --config.num_samples, --config.sample_seed).
Data:     data/text.py: tiny-shakespeare (1,115,394 characters, 65-character vocabulary),
          nanoGPT's split: the first 90% trains, the last 10% (111,540 characters)
          validates. data.name=text with data.path=FILE trains on any UTF-8 text.
          Training windows start at uniform random positions drawn from (seed, step).
Models:   models/transformer.py (GPT: learned positions, pre-LayerNorm, causal attention
          through jax.nn.dot_product_attention, GELU MLP, tied head, no biases, dropout);
          the recurrent LMs are models/rnn.py's RNNClassifier with readout='all' over a
          character embedding (the house LSTM / GRU / Elman cells).
Training: train/language_model.py on the loop driver: AdamW (decay 0.1 on matrices
          only), linear warmup then cosine decay to a tenth, gradient clipping at norm 1,
          bfloat16 compute on accelerators (float32 on CPU).
Outputs:  results.json: val_loss (nats per character over every character of the
          validation split), val_bits_per_char, best_val_loss, final_train_loss,
          tokens_per_second, num_params; samples.txt; metrics.jsonl, curves.png.

Hardware: 2 cores of an AMD EPYC CPU, no GPU, JAX 0.10.2 (CPU), float32. The machine was
          shared with 12-27 other processes (load average 18.4 at the start of the
          transformer_cpu run, 15.8 at its end, 27 at its worst), so every time here is
          an upper bound, several times a quiet machine's.

Result (seed 0):
  transformer_cpu (nanoGPT's CPU run; 804,096 parameters, nanoGPT's count 0.80M):
          val loss 1.904 nats per character (2.747 bits) over the whole validation
          split after 2,000 iterations; nanoGPT's README: 1.88 (its estimate_loss on 20
          random batches). Target missed by 0.024. Val 2.313 / 2.086 / 1.958 at
          iterations 500 / 1,000 / 1,500; final train loss 1.776 (mean of the last 50
          steps). 3,004 s of training (51.4 min wall with start-up and 5 evaluations),
          560 tokens/s (the load above). Command: the first one above with
          --config.eval_every_steps=500. samples.txt reads like Shakespeare's layout
          with invented words ("LOMEO: / What hat he son un comend for him,").
          Rerun on the quiet machine (2026-11-26, benchmarks/char_lm_nanogpt.py): the
          same curve bit for bit, 318 s for the process (116 ms an iteration); our
          PyTorch rewrite of nanoGPT's recipe gets 1.910 on the same whole-split metric.
          With every dense layer's input flattened to 2-D (models/layers.Dense, later
          that day): val 1.904 again, 104.4 and 92.5 ms an iteration in two runs
          (316 and 278 s for the process). With DEEPLEARN_JAX_MALLOC=keep
          (deeplearn_jax/host_memory.py; 2026-11-27): val 1.904 again, 60.4 ms an
          iteration, 205 s for the process (nanoGPT's loop beside it: 63.8 ms).
  transformer (nanoGPT's GPU run, 10,745,088 parameters; published val 1.4697 on an
          A100, its best checkpoint): on one NVIDIA H200 (jax 0.11.2, bf16, 2026-11-26)
          with --gpu_deterministic: validation over the whole split, every 250
          iterations, best 1.4597 at iteration 2,000 (target <= 1.49 met), 1.689 at
          5,000 (train 0.82): it overfits after 2,000. 80 s of training (1.29M
          tokens/s), 101 s the process. Without --gpu_deterministic: best 1.4601,
          61.5 s (1.94M tokens/s). Before nanoGPT's attention-weight dropout was added:
          best 1.498, final 2.083.
  lstm / gru / elman (2 layers of 512 / 592 / 1,000 units, 3.3M / 3.3M / 3.1M
          parameters; target val <= 1.60 within an hour): lstm (2,200 iterations,
          evaluated every 550) on the quiet machine, 1.2 s an iteration: val 1.644 at
          iteration 550 (11.5 min), 1.516 at 1,100 (23.4 min into training): met;
          1.481 at 1,650 (35.7 min). gru: 1.581 / 1.502 / 1.483 at 550 / 1,100 /
          1,650, **1.479** at 2,200 (its best); 45 min to 1,150 (the first 30 beside
          other runs), stopped by SIGTERM and resumed: the rest 23 min alone (1.3 s an
          iteration). elman: 1.717 / 1.607 / 1.532 / 1.509 at 550 / 1,100 /
          1,650 / 2,200 (52 min wall alone, 1.40 s an iteration).
  Speed against nanoGPT's own loop in PyTorch: benchmarks/char_lm_nanogpt.py (README).
"""

import ml_collections

from deeplearn_jax import cli, configs
from deeplearn_jax.data import text as text_lib
from deeplearn_jax.train import language_model

VARIANTS = ("transformer_cpu", "transformer", "lstm", "gru", "elman")
# Recurrent LMs: 2 layers; hidden sizes that give each about the LSTM's parameter count.
RNN_HIDDEN = {"lstm": 512, "gru": 592, "elman": 1000}


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  name, modifiers = configs.parse_variant(variant, VARIANTS, default="transformer_cpu")
  c = language_model.base_config()
  # nanoGPT's CPU run (its README): --block_size=64 --batch_size=12 --n_layer=4 --n_head=4
  # --n_embd=128 --max_iters=2000 --lr_decay_iters=2000 --dropout=0.0, on
  # config/train_shakespeare_char.py (lr 1e-3, min_lr 1e-4, warmup 100, beta2 0.99).
  c.model = ml_collections.ConfigDict(dict(name="transformer", num_layers=4, num_heads=4,
                                           width=128, dropout=0.0))
  if name == "transformer":  # config/train_shakespeare_char.py as it is (its GPU run)
    c.model.update(dict(num_layers=6, num_heads=6, width=384, dropout=0.2))
    c.context, c.batch_size, c.num_train_steps = 256, 64, 5000
  elif name in RNN_HIDDEN:
    c.model = ml_collections.ConfigDict(dict(name="rnn", cell=name, hidden=RNN_HIDDEN[name],
                                             num_layers=2, embed_dim=64, dropout=0.0))
    c.context, c.batch_size = 128, 32
    c.num_train_steps = 2200       # about 45 min on 2 CPU cores
    c.optimizer.learning_rate = 2e-3
    c.optimizer.warmup_steps = 100
    c.eval_every_steps = 550
  if "smoke" in modifiers:
    if c.model.name == "transformer":
      c.model.update(dict(num_layers=2, num_heads=2, width=32))
    else:
      c.model.hidden = 32
    c.context, c.batch_size, c.num_train_steps = 16, 8, 30
    c.optimizer.warmup_steps = 5
    c.eval_every_steps, c.checkpoint_every_steps, c.log_every_steps = 10, 10, 10
    c.eval_batch_size = 512
    c.num_samples, c.sample_length = 1, 40
    c.progress = False
  c.lock()
  return c


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  if config.sample_from:
    return language_model.sample_from(config)
  text = text_lib.load(config.data)
  return language_model.run(config, workdir, text).results


if __name__ == "__main__":
  cli.run(__file__, "char_lm", train_and_evaluate)
