"""Datasets that ship with the code: scikit-learn's digits and the boolean truth tables."""

import numpy as np

TRUTH_TABLES = {
    "xor": [0, 1, 1, 0],
    "and": [0, 0, 0, 1],
    "or": [0, 1, 1, 1],
}


def truth_table(name: str) -> dict[str, dict[str, np.ndarray]]:
  """The four rows of a 2-input boolean function; train and test are the whole table."""
  x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
  y = np.array(TRUTH_TABLES[name], np.int32)
  table = {"input": x, "label": y}
  return {"train": table, "test": table}


def digits() -> dict[str, dict[str, np.ndarray]]:
  """scikit-learn's 1,797 8x8 digits as uint8 images; every 5th image is the fixed test set."""
  from sklearn.datasets import load_digits

  d = load_digits()
  images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
  labels = d.target.astype(np.int32)
  test = np.arange(len(labels)) % 5 == 0
  return {"train": {"input": images[~test], "label": labels[~test]},
          "test": {"input": images[test], "label": labels[test]}}


def mock_images(num_classes: int = 10, size: int = 32, num_train: int = 640,
                num_test: int = 160, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
  """Seeded synthetic RGB images for smoke runs: each class a smooth random pattern,
  each image its class's pattern plus noise, so a model can learn them in seconds."""
  rng = np.random.default_rng(seed)
  coarse = rng.normal(size=(num_classes, 4, 4, 3))
  patterns = np.repeat(np.repeat(coarse, size // 4, axis=1), size // 4, axis=2)

  def split(n):
    labels = rng.integers(0, num_classes, size=n).astype(np.int32)
    x = patterns[labels] + rng.normal(scale=1.0, size=(n, size, size, 3))
    return {"input": np.clip(128 + 40 * x, 0, 255).astype(np.uint8), "label": labels}

  return {"train": split(num_train), "test": split(num_test)}
