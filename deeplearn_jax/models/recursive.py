"""Recursive networks: vectors composed up a binary tree (Socher et al. 2011; the
Tree-LSTM of Tai et al. 2015), batched on device.

* `TreeClassifier` (registered "tree"): a given tree per example as a node buffer
  [batch, 2T, 3] (data/listops.py makes one): rows 0..T-1 are token leaves (token, -1,
  -1), rows T.. the internal nodes in post-order (-, left row, right row), the root
  last. The leaves are embedded all at once, then one `lax.scan` over the internal rows
  T, T+1, ... computes each row from its two children for the whole batch, so a batch
  costs T-1 sequential steps, not a Python call per node.
* `RecursiveAutoencoder`: a tree built greedily by reconstruction error (Socher et al.
  2011): at each of the T-1 merge steps, for the whole batch at once, the adjacent pair
  whose parent reconstructs its children best is merged (a scan over merge steps).

Compositions are pure functions of their weights (`combine`, `leaf`), so a plain
recursive evaluation of one tree (the tests) uses exactly the batched model's maths.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

COMPOSITIONS = ("tanh", "tree_lstm")


def state_size(composition: str, hidden: int) -> int:
  """A node's state width: h (tanh) or (c, h) side by side (tree_lstm)."""
  return hidden if composition == "tanh" else 2 * hidden


def leaf(composition: str, w, b, x):
  """A leaf's state from its embedding x [..., e] (tree_lstm: input, output and update
  gates with no children, c = i*u)."""
  z = x @ w + b
  if composition == "tanh":
    return jnp.tanh(z)
  i, o, u = jnp.split(z, 3, axis=-1)
  c = nn.sigmoid(i) * jnp.tanh(u)
  return jnp.concatenate([c, nn.sigmoid(o) * jnp.tanh(c)], -1)


def combine(composition: str, w, b, left, right):
  """The parent's state from its children's: tanh(W[l; r] + b) (Socher), or the binary
  Tree-LSTM (a forget gate per child: c = i*u + f_l*c_l + f_r*c_r)."""
  if composition == "tanh":
    return jnp.tanh(jnp.concatenate([left, right], -1) @ w + b)
  (cl, hl), (cr, hr) = jnp.split(left, 2, -1), jnp.split(right, 2, -1)
  z = jnp.concatenate([hl, hr], -1) @ w + b
  i, fl, fr, o, u = jnp.split(z, 5, axis=-1)
  c = nn.sigmoid(i) * jnp.tanh(u) + nn.sigmoid(fl) * cl + nn.sigmoid(fr) * cr
  return jnp.concatenate([c, nn.sigmoid(o) * jnp.tanh(c)], -1)


def output(composition: str, state):
  """What the head reads of a state: h."""
  return state if composition == "tanh" else jnp.split(state, 2, -1)[1]


def _forget_bias(hidden: int):
  """Tree-LSTM biases with the two forget gates at 1 (children remembered at first)."""
  def init(key, shape, dtype=jnp.float32):
    del key
    return jnp.zeros(shape, dtype).at[hidden:3 * hidden].set(1.0)
  return init


def compose_tree(composition: str, leaf_states, children, w, b):
  """States of every node of a batch of trees: leaf_states [batch, T, s] for rows
  0..T-1 and children [batch, T-1, 2] (rows; -1 for padding) of internal rows T..2T-2,
  each row's children earlier rows. Returns the buffer [batch, 2T-1, s]."""
  batch, t, s = leaf_states.shape
  buf = jnp.concatenate([leaf_states, jnp.zeros((batch, t - 1, s), leaf_states.dtype)], 1)
  rows = jnp.arange(batch)
  kids = jnp.swapaxes(jnp.maximum(children, 0), 0, 1)  # [T-1, batch, 2]; pads read row 0

  def step(buf, inputs):
    k, kid = inputs
    new = combine(composition, w, b, buf[rows, kid[:, 0]], buf[rows, kid[:, 1]])
    return jax.lax.dynamic_update_slice_in_dim(buf, new[:, None], t + k, axis=1), None

  buf, _ = jax.lax.scan(step, buf, (jnp.arange(t - 1), kids))
  return buf


class TreeClassifier(nn.Module):
  """Composes a given binary tree (the node buffer above) bottom-up and classifies its
  root with a one-hidden-layer MLP. `lengths` [batch]: tokens per example (root row
  T + n - 2, or the single leaf 0)."""

  num_classes: int
  vocab_size: int = 16
  embed_dim: int = 128
  hidden: int = 128
  composition: str = "tree_lstm"
  mlp_hidden: int = 128
  dtype: str = "float32"

  def __post_init__(self):
    if self.composition not in COMPOSITIONS:
      raise ValueError(f"composition must be one of {', '.join(COMPOSITIONS)}, "
                       f"got {self.composition!r}")
    super().__post_init__()

  def setup(self):
    h, gates = self.hidden, 1 if self.composition == "tanh" else 3
    self.embed = nn.Embed(self.vocab_size, self.embed_dim)
    self.leaf_w = self.param("leaf_kernel", nn.initializers.lecun_normal(),
                             (self.embed_dim, gates * h))
    self.leaf_b = self.param("leaf_bias", nn.initializers.zeros, (gates * h,))
    parts = 1 if self.composition == "tanh" else 5
    self.comp_w = self.param("combine_kernel", nn.initializers.lecun_normal(),
                             (2 * h, parts * h))
    self.comp_b = self.param("combine_bias", nn.initializers.zeros if parts == 1
                             else _forget_bias(h), (parts * h,))
    self.mlp = nn.Dense(self.mlp_hidden, name="mlp")
    self.head = nn.Dense(self.num_classes, name="head")

  def leaves(self, tokens):
    return leaf(self.composition, self.leaf_w, self.leaf_b, self.embed(tokens))

  def node(self, left, right):
    return combine(self.composition, self.comp_w, self.comp_b, left, right)

  def classify(self, state):
    return self.head(nn.relu(self.mlp(output(self.composition, state))))

  def __call__(self, x, train: bool = False, lengths=None):
    del train
    x = jnp.asarray(x, jnp.int32)
    t = x.shape[1] // 2
    buf = compose_tree(self.composition, self.leaves(jnp.maximum(x[:, :t, 0], 0)),
                       x[:, t:2 * t - 1, 1:], self.comp_w, self.comp_b)
    if lengths is None:
      lengths = jnp.full((x.shape[0],), t, jnp.int32)
    root = jnp.where(lengths > 1, t + lengths - 2, 0)
    return self.classify(buf[jnp.arange(x.shape[0]), root]).astype(jnp.float32)


# -- The recursive autoencoder ------------------------------------------------------------

def rae_parent(w, b, left, right):
  """Socher et al. 2011's parent, tanh(W[c1; c2] + b) scaled to unit length."""
  p = jnp.tanh(jnp.concatenate([left, right], -1) @ w + b)
  return p / jnp.linalg.norm(p, axis=-1, keepdims=True).clip(1e-6)


def rae_error(w_dec, b_dec, parent, left, right, n_left, n_right):
  """Reconstruction error of [left; right] from the parent, each child's squared error
  weighted by its share of the words it spans (Socher et al. 2011, eq. 7)."""
  rec = parent @ w_dec + b_dec
  rl, rr = jnp.split(rec, 2, -1)
  nl, nr = n_left.astype(parent.dtype), n_right.astype(parent.dtype)
  return (nl * jnp.sum((rl - left) ** 2, -1) + nr * jnp.sum((rr - right) ** 2, -1)) / (nl + nr)


def greedy_merge(params, words, lengths):
  """Builds each sentence's tree greedily, for a batch at once: words [batch, T, d],
  lengths [batch]. At each of T-1 steps the adjacent pair with the lowest reconstruction
  error is merged into its parent; only the two pairs next to it change, so each step
  computes two new parents per sentence. Returns (nodes [batch, T-1, d] in merge order,
  their errors [batch, T-1], valid [batch, T-1], root [batch, d], merges [batch, T-1]:
  the position merged at each step). The tree's choice is not differentiated through;
  its nodes and errors are."""
  w, b, w_dec, b_dec = params
  batch, t, _ = words.shape
  rows = jnp.arange(batch)
  big = jnp.asarray(jnp.inf, words.dtype)
  counts = jnp.ones((batch, t), jnp.int32)

  def pairs(seq, cnt, live):
    p = rae_parent(w, b, seq[:, :-1], seq[:, 1:])
    e = rae_error(w_dec, b_dec, p, seq[:, :-1], seq[:, 1:], cnt[:, :-1], cnt[:, 1:])
    return p, jnp.where(live, e, big)

  pos = jnp.arange(t - 1)
  par, err = pairs(words, counts, pos[None] < lengths[:, None] - 1)

  def step(carry, k):
    seq, cnt, par, err = carry
    live_len = lengths - k                # symbols left before this merge
    valid = live_len > 1
    j = jnp.argmin(err, axis=1)           # [batch]
    node, e = par[rows, j], err[rows, j]
    n = cnt[rows, j] + cnt[rows, j + 1]
    # The sequence after merging j and j+1: left of j as is, j the parent, then shifted.
    src = jnp.where(jnp.arange(t)[None] <= j[:, None], jnp.arange(t)[None],
                    jnp.minimum(jnp.arange(t)[None] + 1, t - 1))
    new_seq = jnp.take_along_axis(seq, src[..., None], 1).at[rows, j].set(node)
    new_cnt = jnp.take_along_axis(cnt, src, 1).at[rows, j].set(n)
    psrc = src[:, :-1]
    new_par = jnp.take_along_axis(par, psrc[..., None], 1)
    new_err = jnp.take_along_axis(err, psrc, 1)
    # The two pairs that now hold the parent: (j-1, j) and (j, j+1).
    for q in (jnp.maximum(j - 1, 0), jnp.minimum(j, t - 2)):
      a, c = new_seq[rows, q], new_seq[rows, q + 1]
      p = rae_parent(w, b, a, c)
      pe = rae_error(w_dec, b_dec, p, a, c, new_cnt[rows, q], new_cnt[rows, q + 1])
      new_par = new_par.at[rows, q].set(p)
      new_err = new_err.at[rows, q].set(pe)
    new_err = jnp.where(pos[None] < live_len[:, None] - 2, new_err, big)
    keep = lambda new, old: jnp.where(valid.reshape((-1,) + (1,) * (new.ndim - 1)), new, old)
    carry = (keep(new_seq, seq), keep(new_cnt, cnt), keep(new_par, par), keep(new_err, err))
    return carry, (node, jnp.where(valid, e, 0.0), valid, j)

  (seq, _, _, _), (nodes, errs, valid, merges) = jax.lax.scan(
      step, (words, counts, par, err), jnp.arange(t - 1))
  sw = lambda a: jnp.swapaxes(a, 0, 1)
  return sw(nodes), sw(errs), sw(valid), seq[:, 0], sw(merges)


class RecursiveAutoencoder(nn.Module):
  """Semi-supervised RAE (Socher et al. 2011): word vectors (unit length) merged
  greedily into a tree by reconstruction error; a softmax on every node (the label is the
  sentence's) and a sentence softmax on [root; mean of all nodes]. __call__(tokens
  [batch, T], lengths=) -> the sentence logits [batch, C] (so the supervised eval step
  reads it), or with details=True a dict of those (logits), node_logits [batch, T-1, C],
  the merges' reconstruction errors and valid [batch, T-1]."""

  num_classes: int
  vocab_size: int
  dim: int = 50
  dtype: str = "float32"

  def setup(self):
    d = self.dim
    # Small vectors: they are used at unit length, so their scale only sets how far
    # one optimizer step turns them.
    self.embed = nn.Embed(self.vocab_size, d, embedding_init=nn.initializers.normal(0.1))
    self.enc_w = self.param("encoder_kernel", nn.initializers.lecun_normal(), (2 * d, d))
    self.enc_b = self.param("encoder_bias", nn.initializers.zeros, (d,))
    self.dec_w = self.param("decoder_kernel", nn.initializers.lecun_normal(), (d, 2 * d))
    self.dec_b = self.param("decoder_bias", nn.initializers.zeros, (2 * d,))
    self.node_head = nn.Dense(self.num_classes, name="node_head")
    self.head = nn.Dense(self.num_classes, name="head")

  def words(self, tokens):
    v = self.embed(tokens)
    return v / jnp.linalg.norm(v, axis=-1, keepdims=True).clip(1e-6)

  def __call__(self, tokens, train: bool = False, lengths=None, details: bool = False):
    del train
    words = self.words(jnp.asarray(tokens, jnp.int32))
    if lengths is None:
      lengths = jnp.full((words.shape[0],), words.shape[1], jnp.int32)
    nodes, errs, valid, root, _ = greedy_merge(
        (self.enc_w, self.enc_b, self.dec_w, self.dec_b), words, lengths)
    wmask = (jnp.arange(words.shape[1])[None] < lengths[:, None]).astype(words.dtype)
    vmask = valid.astype(words.dtype)
    total = (words * wmask[..., None]).sum(1) + (nodes * vmask[..., None]).sum(1)
    count = wmask.sum(1) + vmask.sum(1)
    feats = jnp.concatenate([root, total / count.clip(1)[:, None]], -1)
    logits = self.head(feats).astype(jnp.float32)
    node_logits = self.node_head(nodes).astype(jnp.float32)  # built at init too
    if not details:
      return logits
    return {"logits": logits, "node_logits": node_logits,
            "errors": errs, "valid": valid}
