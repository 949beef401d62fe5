"""What deep nets replaced: scikit-learn's classical classifiers on the data and splits
our deep experiments use, for a "best classical" figure beside every deep result.

Command:  OMP_NUM_THREADS=1 python -m experiments.classical_baselines \\
              --config.data.manual_dir=../shared/data     (:smoke: the digits, seconds)
Data:     MNIST (official 60,000/10,000), Fashion-MNIST (when its files are under
          manual_dir/fashion_mnist; else "not run: no files"), scikit-learn's digits
          (every 5th image the test set, as data/embedded.py), CIFAR-10 (official
          50,000/10,000, pixels), Tox21 (ECFP4 bits, the random 80/10/10 split of seed 0
          of experiments/tox21.py; mean test ROC AUC over the 12 tasks, one model per
          task, instead of accuracy), the spoken digits (FSDD; statistics of data/spoken_digit.py's
          MFCCs, the dataset's split: recordings 0-4 of each speaker and digit are test).
Methods:  logistic regression, Gaussian and Bernoulli naive Bayes, linear SVM, RBF SVM,
          k-NN, random forest, histogram gradient boosting. Inputs scaled to [0, 1]
          (images) or standardised (MFCCs). Where a method is too slow for 2 CPU cores on
          the full set it runs on a PCA projection and/or a training subset; results.json
          says which (`note`), and so does the README.
Outputs:  results.json `table`: dataset -> method -> test_accuracy (Tox21:
          test_roc_auc), fit_seconds, predict_seconds, note; `best` per dataset;
          `not_run`; `published` (LeCun's MNIST table, scikit-learn's MNIST benchmark).
          Each finished (dataset, method) is written at once, so a rerun resumes.
Hardware: 2 cores of an AMD EPYC CPU shared with other sessions (load average 17-20),
          scikit-learn 1.9.1. OMP_NUM_THREADS=1 is set before scikit-learn loads: two
          OpenMP threads hung HistGradientBoosting here. Wall time about 28 min for
          MNIST and CIFAR-10 (MNIST's linear SVM alone 634 s), about 4 min for the digits
          and spoken digits.
Result:   best test accuracy: digits 98.33% (k-NN, RBF SVM), spoken digits 99.00%
          (k-NN, on the MFCCs of data/spoken_digit.py), MNIST 97.52% (k-NN on PCA-50; LeCun et al. 1998: 96.9-97.2%
          raw), random forest 97.05% (scikit-learn's benchmark 96.8%), logistic
          regression 92.57% (91.8%), CIFAR-10 47.00% (RBF SVM, PCA-100, 10,000
          examples). Tox21 (finished a session later, 11 min 5 s resuming the run
          folder on a quiet machine): best 0.821 (RBF SVM); random forest 0.814, gradient
          boosting 0.803, Bernoulli NB 0.792, logistic regression 0.790, linear SVM
          0.741, k-NN 0.722 (the random forest of experiments/tox21.py, class-balanced,
          3 splits: 0.827). Full table in the README.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy/scikit-learn load (see above)

import logging  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402

from deeplearn_jax import cli, configs, run_folder  # noqa: E402
from deeplearn_jax.data import embedded, molecules, official, spoken_digit, tfds_sources  # noqa: E402
from deeplearn_jax.errors import DataError, UserError  # noqa: E402

logger = logging.getLogger("deeplearn_jax.experiments.classical_baselines")  # shown at INFO

DATASETS = ("digits", "spoken_digit", "mnist", "fashion_mnist", "cifar10", "tox21")
METHODS = ("logistic_regression", "gaussian_nb", "bernoulli_nb", "linear_svm", "rbf_svm",
           "knn", "random_forest", "hist_gradient_boosting")
PUBLISHED = {
    "mnist": {"linear classifier (LeCun et al. 1998)": 0.880,
              "k-NN, Euclidean (LeCun et al. 1998)": "0.969-0.972",
              "Gaussian SVM (LeCun et al. 1998)": 0.986,
              "random forest (scikit-learn MNIST benchmark)": 0.968,
              "logistic regression (scikit-learn MNIST benchmark)": 0.918},
}


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  _, modifiers = configs.parse_variant(variant)
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.datasets = DATASETS
  c.methods = METHODS
  c.data = ml_collections.ConfigDict(dict(manual_dir="", cache_dir=""))
  # Per dataset: PCA dimensions for the methods in `pca_methods` (0 = raw inputs), and the
  # training subset of the slow kernel/neighbour methods (0 = all).
  c.pca_dims = ml_collections.ConfigDict(dict(digits=0, mnist=50, fashion_mnist=50,
                                              cifar10=100, tox21=0, spoken_digit=0))
  c.pca_methods = ("rbf_svm", "knn")
  c.pca_all = ("cifar10",)        # datasets where every method sees the PCA inputs
  c.subset = ml_collections.ConfigDict(dict(digits=0, mnist=10000, fashion_mnist=10000,
                                            cifar10=10000, tox21=0, spoken_digit=0))
  c.subset_methods = ("rbf_svm", "hist_gradient_boosting")
  c.knn_k = 3
  c.trees = 100
  c.boosting_iters = 100
  c.max_iter = 100                # logistic regression / linear SVM iterations
  if "smoke" in modifiers:
    c.datasets = ("digits",)
    c.trees, c.boosting_iters = 20, 20
  c.lock()
  return c


def _scaled_images(x: np.ndarray) -> np.ndarray:
  return (x.reshape(len(x), -1).astype(np.float32) / 255.0)


def load(name: str, config: ml_collections.ConfigDict):
  """(x_train, y_train, x_test, y_test, multilabel?) of `name`; DataError if its files
  are missing."""
  folder = tfds_sources.manual_dir_from(config.data.manual_dir)
  if name == "digits":
    s = embedded.digits()
    return (_scaled_images(s["train"]["input"]), s["train"]["label"],
            _scaled_images(s["test"]["input"]), s["test"]["label"], False)
  if name in ("mnist", "fashion_mnist"):
    sub = os.path.join(folder, name)
    if not os.path.isfile(os.path.join(sub, official.MNIST_FILES["train"][0])):
      raise DataError(f"not run: no files ({sub})")
    xtr, ytr = official.read_mnist(sub, "train")
    xte, yte = official.read_mnist(sub, "test")
    return _scaled_images(xtr), ytr, _scaled_images(xte), yte, False
  if name == "cifar10":
    sub = os.path.join(folder, "cifar10")
    xtr, ytr = official.read_cifar10(sub, "train")
    xte, yte = official.read_cifar10(sub, "test")
    return _scaled_images(xtr), ytr, _scaled_images(xte), yte, False
  if name == "tox21":
    mols = molecules.load(os.path.join(folder, "tox21", "tox21.csv"),
                          cache_dir=config.data.cache_dir)
    train, _, test = molecules.random_split(len(mols.smiles), (0.8, 0.1, 0.1), 0)
    x = mols.features
    return x[train], mols.labels[train], x[test], mols.labels[test], True
  if name == "spoken_digit":
    return spoken_digit_statistics(folder) + (False,)
  raise UserError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")


def spoken_digit_statistics(manual_dir: str):
  """FSDD as MFCC statistics (mean, std, min, max over a clip's frames of 13 MFCCs and
  of their deltas: 104 numbers per recording), the features from data/spoken_digit.py,
  with the dataset's split (recordings 0-4 of each speaker and digit are the test set).
  The reader standardises the frames by the training frames' statistics."""
  ds = spoken_digit.load(ml_collections.ConfigDict(dict(
      manual_dir=manual_dir, features="mfcc", n_mfcc=13, split="official")))

  def stats(split):
    rows = []
    for x, n in zip(split.arrays["input"], split.arrays["lengths"]):
      c = x[:n]
      d = np.diff(c, axis=0) if n > 1 else np.zeros_like(c)
      rows.append(np.concatenate([f(m, 0) for m in (c, d)
                                  for f in (np.mean, np.std, np.min, np.max)]))
    return np.asarray(rows, np.float32), split.arrays["label"]

  return (*stats(ds.train), *stats(ds.test))


def make(method: str, config: ml_collections.ConfigDict):
  """A fresh scikit-learn estimator for `method`."""
  from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
  from sklearn.linear_model import LogisticRegression
  from sklearn.naive_bayes import BernoulliNB, GaussianNB
  from sklearn.neighbors import KNeighborsClassifier
  from sklearn.svm import SVC, LinearSVC
  s = config.seed
  return {
      "logistic_regression": lambda: LogisticRegression(max_iter=config.max_iter),
      "gaussian_nb": GaussianNB,
      "bernoulli_nb": lambda: BernoulliNB(binarize=0.5),
      "linear_svm": lambda: LinearSVC(dual=False, max_iter=config.max_iter, random_state=s),
      "rbf_svm": lambda: SVC(kernel="rbf", gamma="scale", random_state=s),
      "knn": lambda: KNeighborsClassifier(config.knn_k),
      "random_forest": lambda: RandomForestClassifier(config.trees, random_state=s),
      "hist_gradient_boosting": lambda: HistGradientBoostingClassifier(
          max_iter=config.boosting_iters, early_stopping=False, random_state=s),
  }[method]()


def _scores(model, x):
  if hasattr(model, "predict_proba"):
    return model.predict_proba(x)[:, 1]
  return model.decision_function(x)


_PCA: dict = {}


def _projected(name, dims, seed, xtr, xte):
  """Train and test inputs projected on the training set's first `dims` principal
  components, computed once per dataset (the PCA's time goes to the first method)."""
  from sklearn.decomposition import PCA
  key = (name, dims, seed, xtr.shape)
  if key not in _PCA:
    pca = PCA(dims, random_state=seed).fit(xtr)
    _PCA[key] = (pca.transform(xtr), pca.transform(xte))
  return _PCA[key]


def evaluate(method, config, name, xtr, ytr, xte, yte, multilabel) -> dict:
  """Fits `method` (per task where multilabel) and returns its test figure and times."""
  from sklearn.metrics import roc_auc_score
  notes = []
  t0 = time.perf_counter()
  dims = int(config.pca_dims.get(name, 0))
  if dims and (method in config.pca_methods or name in config.pca_all) and dims < xtr.shape[1]:
    xtr, xte = _projected(name, dims, config.seed, xtr, xte)
    notes.append(f"PCA to {dims} dimensions")
  subset = int(config.subset.get(name, 0))
  if method in config.subset_methods and 0 < subset < len(xtr):
    rows = np.sort(np.random.default_rng(config.seed).choice(len(xtr), subset, replace=False))
    xtr, ytr = xtr[rows], ytr[rows]
    notes.append(f"{subset:,} training examples (random subset)")
  model = make(method, config)
  if method == "bernoulli_nb" and (any("PCA" in n for n in notes) or name == "spoken_digit"):
    model.set_params(binarize=0.0)  # centred inputs: binarised at their sign
    notes.append("binarised at 0")
  if not multilabel:
    model.fit(xtr, ytr)
    fit = time.perf_counter() - t0
    t1 = time.perf_counter()
    acc = float(np.mean(model.predict(xte) == yte))
    return {"test_accuracy": acc, "fit_seconds": fit,
            "predict_seconds": time.perf_counter() - t1, "note": "; ".join(notes)}
  aucs, predict = [], 0.0
  for t in range(ytr.shape[1]):
    known, kt = ytr[:, t] >= 0, yte[:, t] >= 0
    m = make(method, config) if t else model
    m.fit(xtr[known], ytr[known, t])
    t1 = time.perf_counter()
    aucs.append(roc_auc_score(yte[kt, t], _scores(m, xte[kt])))
    predict += time.perf_counter() - t1
  return {"test_roc_auc": float(np.mean(aucs)), "fit_seconds": time.perf_counter() - t0 - predict,
          "predict_seconds": predict, "note": "; ".join(notes + ["one model per task"])}


def _validate(config) -> None:
  bad = [d for d in config.datasets if d not in DATASETS]
  bad += [m for m in config.methods if m not in METHODS]
  if bad:
    raise UserError(f"unknown datasets/methods {bad}; datasets: {', '.join(DATASETS)}; "
                    f"methods: {', '.join(METHODS)}")


def best_of(row: dict) -> dict:
  key = lambda r: r.get("test_accuracy", r.get("test_roc_auc", -1))
  name = max(row, key=lambda m: key(row[m]))
  return {"method": name, **row[name]}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  _validate(config)
  run_folder.start(workdir, config)
  path = os.path.join(workdir, "results.json")
  results = run_folder.previous_results(workdir) or {}
  table, not_run = results.get("table", {}), results.get("not_run", {})
  for name in config.datasets:
    try:
      loaded = load(name, config)
    except DataError as e:
      not_run[name] = str(e)
      logger.warning("%s: %s", name, e)
      continue
    not_run.pop(name, None)
    row = table.setdefault(name, {})
    for method in config.methods:
      if method in row:
        continue  # finished in an earlier run of this folder
      logger.info("%s: %s ...", name, method)
      row[method] = evaluate(method, config, name, *loaded)
      logger.info("%s: %s %s", name, method, row[method])
      results = {"table": table, "best": {d: best_of(r) for d, r in table.items() if r},
                 "not_run": not_run, "published": PUBLISHED}
      if jax.process_index() == 0:
        run_folder.atomic_write_json(path, results)
  results = {"table": table, "best": {d: best_of(r) for d, r in table.items() if r},
             "not_run": not_run, "published": PUBLISHED}
  if jax.process_index() == 0:
    run_folder.atomic_write_json(path, results)
  return results


if __name__ == "__main__":
  cli.run(__file__, "classical_baselines", train_and_evaluate)
