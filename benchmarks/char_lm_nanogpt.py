r"""nanoGPT's character Transformer on CPU: its train.py loop in PyTorch against ours
(experiments/char_lm.py:transformer_cpu), same configuration, same machine, taking turns.

Command (from the repository root; torch is the bench extra, torch==2.13.0):

    python benchmarks/char_lm_nanogpt.py --data_dir ../shared/data [--rounds 2]

The PyTorch peer is our own rewrite of karpathy/nanoGPT's model.py and train.py, read
for the recipe: GPT with learned positions, pre-LayerNorm blocks without biases, causal
F.scaled_dot_product_attention, GELU MLP, tied head, N(0, 0.02) init with the residual
projections at 0.02/sqrt(2 * layers); AdamW (fused=False on CPU) with decay 0.1 on the
>= 2-D tensors, betas (0.9, 0.99), its get_lr (linear warmup 100, cosine from 1e-3 to
1e-4 at iteration 2,000), clip_grad_norm_ 1.0, float32, eager (--compile=False), batches
from torch.randint over the same 90% training split. Configuration: nanoGPT's README CPU
run (block 64, batch 12, 4 layers, 4 heads, width 128, dropout 0, 2,000 iterations).

Both evaluate every --eval_every iterations with the same metric: the mean loss over
every character of the validation split (data/text.py's eval_windows), not nanoGPT's
estimate_loss on 20 random batches. Reported per run: ms per iteration (the training
iterations only, the first, which compiles or warms up, left out; ours from
results.json's tokens_per_second), tokens/s, the wall time from the start of training
to the first evaluation at <= --target (evaluations, ours' checkpoints and compilation
included), the final validation loss and the whole process's wall time. Each run is a
fresh process; the order alternates every round because a shared machine drifts; the
load average is recorded at the start and end of each run.

Result: see README (## Results) and benchmarks/results/char_lm_nanogpt.json.
Quick check of the code path (not a benchmark):

    python benchmarks/char_lm_nanogpt.py --data_dir ../shared/data --iters 20 \
        --eval_every 10 --out /tmp/char_lm_check.json
"""

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from machine import cpu_model  # noqa: E402

CONFIG = dict(block_size=64, batch_size=12, n_layer=4, n_head=4, n_embd=128, dropout=0.0,
              learning_rate=1e-3, min_lr=1e-4, warmup_iters=100, beta1=0.9, beta2=0.99,
              weight_decay=0.1, grad_clip=1.0)


def torch_peer(args) -> dict:
  """nanoGPT's train.py logic, CPU, eager, float32; returns this run's figures."""
  import torch
  import torch.nn as nn
  import torch.nn.functional as F

  from deeplearn_jax.data import text as text_lib

  c = dict(CONFIG)
  if args.torch_threads > 0:
    torch.set_num_threads(args.torch_threads)
  torch.manual_seed(1337)
  text = text_lib.from_string("tinyshakespeare", text_lib.read(
      os.path.join(args.data_dir, "tinyshakespeare", "input.txt")))
  train = torch.from_numpy(text.train.astype(np.int64))
  windows, mask = text_lib.eval_windows(text.val, c["block_size"])
  windows, mask = torch.from_numpy(windows.astype(np.int64)), torch.from_numpy(mask)
  width, heads, layers = c["n_embd"], c["n_head"], c["n_layer"]

  class Block(nn.Module):
    def __init__(self):
      super().__init__()
      self.ln_1, self.ln_2 = nn.LayerNorm(width, bias=False), nn.LayerNorm(width, bias=False)
      self.c_attn = nn.Linear(width, 3 * width, bias=False)
      self.attn_proj = nn.Linear(width, width, bias=False)
      self.c_fc = nn.Linear(width, 4 * width, bias=False)
      self.mlp_proj = nn.Linear(4 * width, width, bias=False)
      self.drop = nn.Dropout(c["dropout"])

    def forward(self, x):
      b, t, _ = x.shape
      q, k, v = self.c_attn(self.ln_1(x)).split(width, dim=2)
      q, k, v = (a.view(b, t, heads, width // heads).transpose(1, 2) for a in (q, k, v))
      y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                         dropout_p=c["dropout"] if self.training else 0.0)
      x = x + self.drop(self.attn_proj(y.transpose(1, 2).contiguous().view(b, t, width)))
      return x + self.drop(self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)))))

  class GPT(nn.Module):
    def __init__(self):
      super().__init__()
      self.wte = nn.Embedding(text.vocab_size, width)
      self.wpe = nn.Embedding(c["block_size"], width)
      self.drop = nn.Dropout(c["dropout"])
      self.blocks = nn.ModuleList([Block() for _ in range(layers)])
      self.ln_f = nn.LayerNorm(width, bias=False)
      self.head = nn.Linear(width, text.vocab_size, bias=False)
      self.wte.weight = self.head.weight  # tied
      for name, p in self.named_parameters():
        if p.dim() >= 2:
          std = 0.02 / math.sqrt(2 * layers) if name.endswith("proj.weight") else 0.02
          nn.init.normal_(p, 0.0, std)

    def forward(self, idx, targets, reduction="mean"):
      pos = torch.arange(idx.shape[1])
      x = self.drop(self.wte(idx) + self.wpe(pos))
      for block in self.blocks:
        x = block(x)
      logits = self.head(self.ln_f(x))
      return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1),
                             reduction=reduction)

  model = GPT()
  params = [p for p in model.parameters() if p.requires_grad]
  groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": c["weight_decay"]},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
  optimizer = torch.optim.AdamW(groups, lr=c["learning_rate"], betas=(c["beta1"], c["beta2"]))

  def get_lr(it):
    if it < c["warmup_iters"]:
      return c["learning_rate"] * (it + 1) / (c["warmup_iters"] + 1)
    if it > args.iters:
      return c["min_lr"]
    ratio = (it - c["warmup_iters"]) / (args.iters - c["warmup_iters"])
    return c["min_lr"] + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (c["learning_rate"] - c["min_lr"])

  def get_batch():
    ix = torch.randint(len(train) - c["block_size"], (c["batch_size"],))
    x = torch.stack([train[i:i + c["block_size"]] for i in ix])
    y = torch.stack([train[i + 1:i + 1 + c["block_size"]] for i in ix])
    return x, y

  @torch.no_grad()
  def val_loss():
    model.eval()
    total = 0.0
    for i in range(0, len(windows), 256):
      w, m = windows[i:i + 256], mask[i:i + 256]
      losses = model(w[:, :-1], w[:, 1:], reduction="none").view(m.shape)
      total += float(losses[m].sum())
    model.train()
    return total / float(mask.sum())

  evals, step_seconds, reached = [], 0.0, None
  start = time.perf_counter()
  for it in range(args.iters):
    t0 = time.perf_counter()
    for group in optimizer.param_groups:
      group["lr"] = get_lr(it)
    x, y = get_batch()
    loss = model(x, y)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), c["grad_clip"])
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    loss.item()  # nanoGPT reads the loss on log iterations; here every one (it syncs)
    if it:  # the first iteration warms up, as ours' first (compiling) call is left out
      step_seconds += time.perf_counter() - t0
    done = it + 1
    if done % args.eval_every == 0 or done == args.iters:
      v = val_loss()
      wall = time.perf_counter() - start
      evals.append({"step": done, "val_loss": v, "wall_seconds": wall})
      if reached is None and v <= args.target:
        reached = wall
  ms = 1000 * step_seconds / (args.iters - 1)
  return {"ms_per_iter": ms, "tokens_per_second": c["batch_size"] * c["block_size"] / ms * 1000,
          "seconds_to_target": reached, "val_loss": evals[-1]["val_loss"], "evals": evals,
          "num_params": sum(p.numel() for p in params), "torch_threads": torch.get_num_threads()}


def ours(args, workdir: str, xla_flags: str = "") -> dict:
  """Our experiment as a user runs it, in a subprocess; xla_flags replace XLA_FLAGS."""
  env = {**os.environ, "XLA_FLAGS": xla_flags} if xla_flags else None
  cmd = [sys.executable, "-m", "experiments.char_lm",
         "--config=experiments/char_lm.py:transformer_cpu",
         f"--config.data.manual_dir={os.path.abspath(args.data_dir)}",
         f"--config.num_train_steps={args.iters}", f"--config.eval_every_steps={args.eval_every}",
         "--config.progress=False", f"--workdir={workdir}"]
  subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, text=True, env=env)
  with open(os.path.join(workdir, "results.json")) as f:
    res = json.load(f)
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(l) for l in f]
  evals = [{"step": r["step"], "val_loss": r["loss"], "wall_seconds": r["wall_seconds"]}
           for r in rows if r["split"] in ("eval", "test")]
  tokens = CONFIG["batch_size"] * CONFIG["block_size"]
  return {"ms_per_iter": 1000 * tokens / res["tokens_per_second"],
          "tokens_per_second": res["tokens_per_second"],
          "seconds_to_target": next((e["wall_seconds"] for e in evals
                                     if e["val_loss"] <= args.target), None),
          "val_loss": res["val_loss"], "evals": evals, "num_params": res["num_params"]}


def timed(fn) -> dict:
  load0, t0 = os.getloadavg()[0], time.perf_counter()
  out = fn()
  out.update(process_seconds=time.perf_counter() - t0, load_start=load0,
             load_end=os.getloadavg()[0])
  return out


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--data_dir", default=str(REPO.parent / "shared" / "data"))
  p.add_argument("--iters", type=int, default=2000)
  p.add_argument("--eval_every", type=int, default=100)
  p.add_argument("--target", type=float, default=1.88)
  p.add_argument("--rounds", type=int, default=1)
  p.add_argument("--torch_threads", default="0",
                 help="comma-separated: one PyTorch runner per thread count (0: its default)")
  p.add_argument("--ours_xla_flags", default="",
                 help="also run ours with these XLA_FLAGS (runner 'ours_xla_flags'), e.g. "
                      "--xla_cpu_experimental_ynn_fusion_type=dot")
  p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "char_lm_nanogpt.json"))
  p.add_argument("--peer", default="", help=argparse.SUPPRESS)  # internal: run torch, write here
  args = p.parse_args()
  threads = [int(t) for t in str(args.torch_threads).split(",")]
  if args.peer:
    args.torch_threads = threads[0]
  if args.peer:
    with open(args.peer, "w") as f:
      json.dump(torch_peer(args), f)
    return

  def pytorch(n):
    with tempfile.NamedTemporaryFile(suffix=".json") as tmp:
      subprocess.run([sys.executable, __file__, "--data_dir", args.data_dir, "--iters",
                      str(args.iters), "--eval_every", str(args.eval_every), "--target",
                      str(args.target), "--torch_threads", str(n), "--peer", tmp.name],
                     check=True)
      with open(tmp.name) as f:
        return json.load(f)

  runs = []
  ours_runs = ["ours"] + (["ours_xla_flags"] if args.ours_xla_flags else [])
  names = [f"pytorch_threads{n or 'default'}" for n in threads] + ours_runs
  with tempfile.TemporaryDirectory() as tmp:
    for r in range(args.rounds):
      order = [(f"pytorch_threads{n or 'default'}", lambda n=n: pytorch(n)) for n in threads]
      order.append(("ours", lambda: ours(args, os.path.join(tmp, f"r{r}"))))
      if args.ours_xla_flags:
        order.append(("ours_xla_flags", lambda: ours(args, os.path.join(tmp, f"x{r}"),
                                                     args.ours_xla_flags)))
      for name, fn in (order if r % 2 == 0 else order[::-1]):
        out = timed(fn)
        runs.append({"runner": name, "round": r, **out})
        print(f"round {r} {name:22s} {out['ms_per_iter']:7.2f} ms/iter "
              f"{out['tokens_per_second']:8.0f} tok/s  to {args.target}: "
              f"{out['seconds_to_target']}  val {out['val_loss']:.4f}  "
              f"process {out['process_seconds']:.0f} s  load {out['load_start']:.1f}"
              f"->{out['load_end']:.1f}", flush=True)
  import torch
  summary = {}
  for name in names:
    mine = [x for x in runs if x["runner"] == name]
    summary[name] = {"median_ms_per_iter": float(np.median([x["ms_per_iter"] for x in mine])),
                     "median_seconds_to_target": (float(np.median(
                         [x["seconds_to_target"] for x in mine]))
                         if all(x["seconds_to_target"] for x in mine) else None)}
  peers = names[:-len(ours_runs)]
  summary["speedup_per_iter"] = {f"{o}_vs_{n}": summary[n]["median_ms_per_iter"]
                                 / summary[o]["median_ms_per_iter"]
                                 for o in ours_runs for n in peers}
  result = {"config": CONFIG, "iters": args.iters, "eval_every": args.eval_every,
            "ours_xla_flags": args.ours_xla_flags,
            "target": args.target, "cpu": cpu_model(), "cores": os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__,
            "jax": __import__("jax").__version__, "runs": runs, "summary": summary}
  Path(args.out).parent.mkdir(parents=True, exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(result, f, indent=1)
  print(json.dumps(summary, indent=1))


if __name__ == "__main__":
  main()
