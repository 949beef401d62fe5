"""Tox21's pieces on tiny data: the masked loss ignores missing labels, scaffold splits
keep every scaffold in one split, a smoke run of the multi-task net (and the random
forests) learns a generated molecule set, bad molecule files give
one clear line; and the classical baselines on the embedded digits."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import smoke_config
from deeplearn_jax.data import molecules
from deeplearn_jax.errors import DataError, UserError
from deeplearn_jax.train import losses
from experiments import classical_baselines, tox21

SCAFFOLDS = ("c1ccccc1", "C1CCCCC1", "c1ccncc1", "C1CCOC1", "c1ccc2ccccc2c1", "")
SUBSTITUENTS = ("", "O", "N", "Cl", "C(=O)O")


def _molecule_csv(path, bad=("C1CC(",)) -> str:
  """Molecules made from scaffolds, chains and substituents, two tasks a fingerprint
  can tell: 'nitrogen' (has an N) and 'aromatic'; every 7th label missing."""
  rows, i = [], 0
  for scaffold in SCAFFOLDS:
    for k in range(1, 6):
      for sub in SUBSTITUENTS:
        smi = "C" * k + scaffold + sub
        has_n = int("N" in sub or "n" in scaffold)
        arom = int(any(ch in scaffold for ch in "cn"))
        cells = [str(has_n) if i % 7 else "", str(arom) if (i + 3) % 7 else ""]
        rows.append(",".join([smi, *cells]))
        i += 1
  rows += [f"{s},1,0" for s in bad]
  with open(path, "w") as f:
    f.write("smiles,nitrogen,aromatic\n" + "\n".join(rows) + "\n")
  return str(path)


def test_masked_bce_ignores_missing_labels():
  rng = np.random.default_rng(0)
  logits = jnp.asarray(rng.normal(size=(6, 4)), jnp.float32)
  labels = jnp.asarray(rng.integers(-1, 2, size=(6, 4)), jnp.int32)
  weights = jnp.asarray(rng.uniform(0.5, 3, size=(6, 4)), jnp.float32)
  missing = labels < 0
  assert missing.any() and (~missing).any()
  loss = lambda z: losses.masked_binary_cross_entropy(z, labels, weights).mean()
  changed = jnp.where(missing, logits + 100.0 * rng.normal(size=(6, 4)), logits)
  assert float(loss(changed)) == pytest.approx(float(loss(logits)), rel=1e-6)
  g, g2 = jax.grad(loss)(logits), jax.grad(loss)(changed)
  np.testing.assert_allclose(g, g2, rtol=1e-6)
  assert np.all(np.asarray(g)[np.asarray(missing)] == 0)
  assert np.all(np.asarray(g)[~np.asarray(missing)] != 0)
  # An infinite logit where the label is missing still gives a finite loss.
  assert np.isfinite(float(loss(jnp.where(missing, jnp.inf, logits))))


@pytest.mark.parametrize("scaling", molecules.SCALINGS)
def test_descriptor_inputs_stay_finite_past_float32_squares(scaling):
  # RDKit's Ipc passes 1e19 on Tox21; its square overflowed float32 statistics.
  rng = np.random.default_rng(0)
  x = np.stack([rng.integers(0, 2, 50), rng.normal(size=50), 10.0 ** rng.uniform(15, 30, 50)],
               1).astype(np.float32)
  mols = molecules.Molecules(["C"] * 50, x, np.zeros((50, 1), np.float32), ["t"], [])
  out = molecules.inputs(mols, np.arange(40), scaling)
  assert np.isfinite(out).all() and np.abs(out).max() <= 10
  assert out[:, 2].std() > 0.1  # the huge column still carries its ranking
  # Each descriptor keeps its order (ties allowed past the training range and the clip),
  # centred on the training rows; the fingerprint bit stays 0 or 1.
  for j in (1, 2):
    assert (np.diff(out[np.argsort(x[:, j]), j]) >= 0).all()
  assert abs(float(np.median(out[:40, 1]))) < 0.3
  np.testing.assert_array_equal(out[:, 0], x[:, 0])


def test_unknown_descriptor_scaling_is_refused():
  mols = molecules.Molecules(["C"] * 4, np.array([[0, 0.5]] * 4, np.float32),
                             np.zeros((4, 1), np.float32), ["t"], [])
  with pytest.raises(UserError, match="descriptor scaling must be one of"):
    molecules.inputs(mols, np.arange(2), "minmax")


def test_scaffold_split_keeps_each_scaffold_in_one_split():
  smiles = ["C" * k + s + sub for s in SCAFFOLDS for k in range(1, 4) for sub in SUBSTITUENTS]
  splits = molecules.scaffold_split(smiles, (0.6, 0.2, 0.2))
  seen = [{molecules.scaffold(smiles[i]) for i in s} for s in splits]
  assert all(len(s) for s in splits)
  assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
  assert sorted(np.concatenate(splits)) == list(range(len(smiles)))


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("tox21")
  cfg = smoke_config(tox21, "smoke", **{
      "data.path": _molecule_csv(tmp / "mols.csv"), "data.cache_dir": str(tmp / "cache"),
      "data.fingerprint_bits": 256, "model.hidden": (32,), "batch_size": 32,
      "eval_batch_size": 40, "num_train_steps": 60, "eval_every_steps": 20,
      "tox21.kinds": ("multi", "rf"), "tox21.ensemble": 2, "rf.n_estimators": 10})
  return tox21.train_and_evaluate(cfg, str(tmp / "run")), tmp, cfg


@pytest.mark.xdist_group("tox21_smoke")  # one worker makes the smoke run
def test_multitask_smoke_learns_and_reports_bad_smiles(smoke_run):
  results, tmp, _ = smoke_run
  assert results["invalid_smiles"] == 1 and "C1CC(" in results["invalid_smiles_rows"][0]
  multi = results["runs"]["multi_seed0"]
  assert multi["test_roc_auc"] > 0.75, multi
  assert set(multi["test_auc"]) == {"nitrogen", "aromatic"}
  assert results["runs"]["rf_seed0"]["test_roc_auc"] > 0.75
  saved = json.loads((tmp / "run" / "results.json").read_text())
  assert saved["multi_mean_test_roc_auc"]["mean"] == pytest.approx(multi["test_roc_auc"])
  # Featurised once: the cache holds the CSV's fingerprints.
  assert len(os.listdir(tmp / "cache")) == 1


@pytest.mark.xdist_group("tox21_smoke")  # one worker makes the smoke run
def test_ensemble_averages_its_members_selected_probabilities(smoke_run):
  results, tmp, cfg = smoke_run
  run = results["runs"]["multi_seed0"]
  assert len(run["members"]) == 2
  mols, (_, _, test) = tox21.load(cfg)
  probs = []
  for k, member in enumerate(run["members"]):
    path = tmp / "run" / "multi_seed0" / f"net{k}" / "predictions"
    with np.load(path / f"{member['selected_step']}.npz") as f:
      probs.append(jax.nn.sigmoid(f["test"]))
  assert not np.allclose(probs[0], probs[1])  # two seeds, two nets
  expected = np.nanmean(tox21.roc_aucs(np.mean(probs, 0), mols.labels[test]))
  assert run["test_roc_auc"] == pytest.approx(float(expected))


def _check_data_error(cfg, pattern):
  with pytest.raises(DataError) as e:
    tox21.train_and_evaluate(cfg, "/nonexistent/never-written")
  assert e.value.exit_code == 2 and "\n" not in str(e.value)
  assert pattern in str(e.value), str(e.value)


def test_bad_molecule_files(tmp_path):
  cases = {
      "no_smiles.csv": ("mol,toxic\nCCO,1\n", "no SMILES column 'smiles'"),
      "no_tasks.csv": ("smiles\nCCO\n", "no task columns"),
      "all_bad.csv": ("smiles,toxic\nC1CC(,1\nXyz,0\n", "none of its 2 SMILES could be parsed"),
      "bad_label.csv": ("smiles,toxic\nCCO,2\n", "labels must be 0, 1 or empty"),
  }
  for name, (text, pattern) in cases.items():
    (tmp_path / name).write_text(text)
    cfg = smoke_config(tox21, "smoke", **{"data.path": str(tmp_path / name),
                                          "data.cache_dir": str(tmp_path / "cache")})
    _check_data_error(cfg, pattern)
  _check_data_error(smoke_config(tox21, "smoke", **{"data.path": str(tmp_path / "nope.csv")}),
                    "missing molecule file")


def test_classical_baselines_smoke_on_digits(tmp_path, monkeypatch):
  cfg = smoke_config(classical_baselines, "smoke", trees=10, boosting_iters=10,
                     datasets=("digits", "fashion_mnist"),
                     **{"data.manual_dir": str(tmp_path / "empty")})
  results = classical_baselines.train_and_evaluate(cfg, str(tmp_path / "run"))
  row = results["table"]["digits"]
  assert set(row) == set(classical_baselines.METHODS)
  assert all(r["test_accuracy"] > 0.75 for r in row.values()), row
  assert results["best"]["digits"]["test_accuracy"] > 0.95
  assert results["not_run"]["fashion_mnist"].startswith("not run: no files")
  # A rerun of the folder resumes: nothing is refitted.
  monkeypatch.setattr(classical_baselines, "evaluate", lambda *a: pytest.fail("refitted"))
  again = classical_baselines.train_and_evaluate(cfg, str(tmp_path / "run"))
  assert again["table"] == results["table"]
