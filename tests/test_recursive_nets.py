"""Recursive nets (experiments/recursive_nets.py): the batched tree scan equals a plain
recursive evaluation of the same trees with the same parameters, the batched greedy
RAE equals a sentence-by-sentence greedy loop, ListOps expressions carry their true
values and respect the generator's settings, a smoke run learns above chance, and bad
input stops with one clear line (exit code 2)."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import SHARED_DATA, smoke_config
from deeplearn_jax.data import listops, movie_review
from deeplearn_jax.errors import DataError, UserError
from deeplearn_jax.models import recursive
from experiments import recursive_nets


def _eval_tokens(toks: list[str]) -> int:
  """An evaluator of its own: a stack machine over the token string, blind to the trees."""
  stack = []
  for t in toks:
    if t == listops.END:
      args = []
      while not isinstance(stack[-1], str):
        args.append(stack.pop())
      op = stack.pop()
      args = sorted(args)
      n = len(args)
      stack.append({"[MAX": args[-1], "[MIN": args[0], "[SM": sum(args) % 10,
                    "[MED": (args[n // 2] if n % 2 else (args[n // 2 - 1] + args[n // 2]) // 2)
                    }[op])
    else:
      stack.append(t if t.startswith("[") else int(t))
  assert len(stack) == 1
  return stack[0]


def test_listops_labels_and_settings():
  rng = np.random.default_rng(3)
  exprs = listops.sample(400, rng, max_length=40, max_depth=4, max_args=3)
  enc = listops.encode(exprs, 40, "flat")
  for e, ids, n, label in zip(exprs, enc["input"], enc["lengths"], enc["label"]):
    toks = [listops.VOCAB[i] for i in ids[:n]]
    assert _eval_tokens(toks) == label
    assert n <= 40 and listops.depth(e) <= 3   # the root is at depth 1 of max_depth 4
    # every operator has 2..max_args arguments
    stack = []
    for t in toks:
      if t.startswith("["):
        stack.append(0)
      else:
        if t == listops.END:
          assert 2 <= stack.pop() <= 3
        if stack:
          stack[-1] += 1
  depths = {listops.depth(e) for e in exprs}
  assert depths == {1, 2, 3}


def _recursive_logits(model, variables, node_rows, n):
  """Node by node: a Python recursion over one tree with the model's own functions."""
  t = node_rows.shape[0] // 2
  leaf, node, classify = _methods(model)

  def state(row):
    if row < t:
      return leaf(variables, jnp.asarray([node_rows[row, 0]]))[0]
    left, right = node_rows[row, 1:]
    return node(variables, state(left)[None], state(right)[None])[0]

  return classify(variables, state(t + n - 2 if n > 1 else 0)[None])[0]


def _methods(model):
  """The model's leaf, node and head functions, each jitted once (one node at a time)."""
  method = lambda fn: jax.jit(lambda v, *a: model.apply(v, *a, method=fn))
  return (method(lambda m, tok: m.leaves(tok)), method(lambda m, a, b: m.node(a, b)),
          method(lambda m, s: m.classify(s)))


@pytest.mark.parametrize("composition", ["tree_lstm", "tanh"])
def test_batched_tree_equals_node_by_node(composition):
  exprs = listops.sample(4, np.random.default_rng(1), max_length=12, max_depth=4)
  enc = listops.encode(exprs, 12, "tree")
  model = recursive.TreeClassifier(10, vocab_size=len(listops.VOCAB), embed_dim=6, hidden=5,
                                   composition=composition, mlp_hidden=7)
  x, lengths = jnp.asarray(enc["input"]), jnp.asarray(enc["lengths"])
  variables = model.init(jax.random.PRNGKey(0), x[:1])
  batched = model.apply(variables, x, lengths=lengths)
  for i in range(len(exprs)):
    np.testing.assert_allclose(batched[i], _recursive_logits(model, variables, enc["input"][i],
                                                             int(enc["lengths"][i])),
                               rtol=1e-5, atol=1e-5)


def test_batched_greedy_rae_equals_sentence_loop():
  d, t = 4, 7
  keys = jax.random.split(jax.random.PRNGKey(2), 5)
  params = (jax.random.normal(keys[0], (2 * d, d)), jax.random.normal(keys[1], (d,)),
            jax.random.normal(keys[2], (d, 2 * d)), jax.random.normal(keys[3], (2 * d,)))
  words = jax.random.normal(keys[4], (3, t, d))
  lengths = jnp.asarray([7, 4, 1])
  nodes, errs, valid, root, merges = jax.jit(recursive.greedy_merge)(params, words, lengths)
  w, b, wd, bd = params
  parent = jax.jit(lambda a, c: recursive.rae_parent(w, b, a, c))
  error = jax.jit(lambda a, c, na, nc: recursive.rae_error(wd, bd, parent(a, c), a, c, na, nc))
  for i, n in enumerate(lengths.tolist()):
    seq, cnt = [words[i, k] for k in range(n)], [1] * n
    for k in range(n - 1):  # the plain greedy loop: every pair's parent and error anew
      cands = [(float(error(seq[j], seq[j + 1], jnp.asarray(cnt[j]), jnp.asarray(cnt[j + 1]))),
                j) for j in range(len(seq) - 1)]
      e, j = min(cands)
      p = parent(seq[j], seq[j + 1])
      assert int(merges[i, k]) == j and bool(valid[i, k])
      np.testing.assert_allclose(errs[i, k], e, rtol=1e-4, atol=1e-5)
      np.testing.assert_allclose(nodes[i, k], p, rtol=1e-4, atol=1e-5)
      seq[j:j + 2], cnt[j:j + 2] = [p], [cnt[j] + cnt[j + 1]]
    assert not valid[i, n - 1:].any()
    np.testing.assert_allclose(root[i], seq[0], rtol=1e-4, atol=1e-5)


def test_listops_tree_smoke_learns_above_chance(tmp_path):
  cfg = smoke_config(recursive_nets, parts=("listops_tree",), **{
      "listops.max_length": 16, "listops.widths": (), "tree.steps": 80,
      "listops.num_train": 800, "listops.num_test": 400, "eval_batch_size": 400,
      "mesh.data": 1})  # one device: the tests' 8 fake ones only slow a small scan
  recursive_nets.train_and_evaluate(cfg, str(tmp_path))
  with open(tmp_path / "results.json") as f:
    run = json.load(f)["runs"]["listops_tree"]
  # Ten classes about equally frequent: chance is about 0.1; the most frequent label of
  # the test set is the bar to clear.
  labels = listops.encode(listops.sample(1200, np.random.default_rng([cfg.seed, 1318]), 16),
                          16, "flat")["label"][800:]
  assert run["test_accuracy"] > 1.5 * np.bincount(labels).max() / len(labels)


@pytest.mark.skipif(not os.path.isdir(os.path.join(SHARED_DATA, "movie_review")),
                    reason="needs ../shared/data/movie_review")
def test_movie_review_reads_and_folds():
  sentences, labels = movie_review.read(SHARED_DATA)
  assert len(sentences) == len(labels) == 10662 and labels.sum() == 5331
  folds = movie_review.folds(len(labels), 10, 0)
  assert np.bincount(folds).min() >= 1066


@pytest.mark.parametrize("case", ["missing", "empty"])
def test_bad_movie_review_folder_is_one_line(tmp_path, case):
  data = tmp_path / "data"
  if case == "empty":
    (data / "movie_review").mkdir(parents=True)
    (data / "movie_review" / "rt-polarity.neg").write_text("a b\n")
    (data / "movie_review" / "rt-polarity.pos").write_text("\n")
  cfg = smoke_config(recursive_nets, parts=("mr_bow_logreg",), **{"data.manual_dir": str(data)})
  with pytest.raises(DataError) as e:
    recursive_nets.train_and_evaluate(cfg, str(tmp_path / "run"))
  assert e.value.exit_code == 2 and "\n" not in str(e.value) and "movie" in str(e.value)
  assert not os.path.exists(tmp_path / "run")  # refused before writing


@pytest.mark.parametrize("overrides", [{"parts": ("bogus",)}, {"listops.max_length": 2},
                                       {"mr.rae_folds": 11}])
def test_bad_config_is_refused(tmp_path, overrides):
  cfg = smoke_config(recursive_nets, **overrides)
  with pytest.raises(UserError):
    recursive_nets.train_and_evaluate(cfg, str(tmp_path / "run"))
