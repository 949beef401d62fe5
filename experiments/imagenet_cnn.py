"""The ImageNet moment: AlexNet (Krizhevsky et al. 2012), ResNet (He et al. 2015) and
MobileNet v1 (Howard et al. 2017) on ImageNet, and a fast CIFAR-10 recipe.

Command:  python -m experiments.imagenet_cnn --config.data.tfds_data_dir=...    (ResNet-50)
          python -m experiments.imagenet_cnn --config=experiments/imagenet_cnn.py:VARIANT
VARIANT:  resnet50 (default) | resnet18 | alexnet | mobilenet   ImageNet (TFDS imagenet2012,
              prepared from the user's own ILSVRC2012 files), 224x224
          cifar10      the real CIFAR-10 from --config.data.manual_dir, a small fast net
                       (models/fast_cifar.py) and a recipe tuned for a 2-core CPU
          cifar10_gpu  the same net at the width of airbench94, for one GPU
          ,smoke appended (or :smoke alone): seeded synthetic 32x32 images, seconds; a tiny
                       ResNet for the ImageNet variants, fast_cifar at width 8-16-16 for CIFAR

ImageNet recipe (Goyal et al. 2017; Flax's ImageNet example): random-resized crops and
flips for training, resize + center crop for eval; SGD with Nesterov momentum 0.9,
learning rate 0.1 per 256 images of global batch, 5 warmup epochs then cosine decay,
label smoothing 0.1, weight decay 1e-4 on weights (not biases or BN), bfloat16
compute with float32 parameters; top-1 and top-5 on the validation set.

Published (top-1 / top-5 single model, center crop): ResNet-50 about 76% top-1 (Flax's
example: 76.5% in 2.1 h on TPU v3-32); AlexNet about 59.3% / 81.8% (40.7% / 18.2%
error, one net); MobileNet v1 70.6% top-1.
Ours on ImageNet: NOT RUN. This machine has no ImageNet files and no accelerator; the
ImageNet path is tested on TFDS mock data only.

CIFAR-10 (:cifar10), the real data, seed 0, 2 cores of an AMD EPYC CPU, JAX 0.10.2, float32:
  fast_cifar at widths 32-128-128 (497,528 params; 174 MFLOP per training image by XLA's
  count of the convolutions), 3x3 convolutions as im2col matmuls and pooling as a reshape
  (models/layers.py: 301 against 250 images/s for XLA's own convolution and max-pool, in
  benchmarks/cnn_throughput.py), batch 512, 18 epochs, Nesterov 0.85, learning rate 0.2
  (2 warmup epochs, then linear to 0), weight decay 5e-4, label smoothing 0.2, flips and
  2-pixel translations, test-time flips, the whitening layer computed from 5,000
  training images and frozen. Test accuracy after each epoch: 46.9, 69.7, 78.3, 82.7, 84.1, 84.3, 86.6,
  86.9, 87.5, 87.8, 87.5, 89.2, 89.1, 89.4, 89.9, 90.2, 90.3, 90.11%.
  90% first reached after epoch 16, 3,186 s (53.1 min) from the start of the command;
  final 90.11% at 3,561 s wall (59.4 min; 289 images/s while training, about 50 GFLOP/s
  of convolution work: 27% of the 183-192 GFLOP/s a 4096^2 float32 matmul reaches here).
  The margin to the 60-minute target is small: the per-epoch test evaluation (with flips)
  costs about 20 s of each epoch's 190 s, and a short benchmark shared the CPU during the
  first 4 minutes.
  Command: python -m experiments.imagenet_cnn --config=experiments/imagenet_cnn.py:cifar10
           --config.data.manual_dir=../shared/data
  The same command with --config.eval_every_epochs=2 (on a quiet CPU) trains identically
  (same accuracy at every second epoch, final 90.11%) in 3,152 s wall (52.5 min; 90%
  first seen after epoch 16 at 46.6 min; 307 images/s).
  Seed 1 (--config.seed=1; 2026-11-27, a 2-core AVX2 EPYC, sharing the cores, so its
  112 min are not a speed figure): 46.2, 66.6, 79.0, 82.8, 83.7, 86.0, 86.0, 87.6,
  87.6, 87.8, 88.9, 89.1, 89.5, 90.1, 90.3, 90.5, 90.6, 90.78%: 90% after epoch 14.
  Seed 2 (--config.seed=2; the same machine, 2026-11-27, stopped once and resumed,
  sharing the cores): 48.9, 67.9, 79.4, 81.8, 85.0, 85.9, 86.8, 87.5, 87.5, 87.5, 88.8,
  89.3, 89.7, 89.5, 90.0, 90.3, 90.5, 90.70%: 90% after epoch 15. Over seeds 0, 1, 2:
  90.53 +- 0.37% (sample std), every seed above 90%.
  Published: airbench94 (Jordan 2024) 94% in 2.59 s on one A100 (widths 64-256-256);
  :cifar10_gpu is that width in bfloat16, checked on CPU only (no GPU was available).
"""

import ml_collections
import numpy as np

from deeplearn_jax import cli, configs, data
from deeplearn_jax.models import fast_cifar
from deeplearn_jax.train import supervised

VARIANTS = ("resnet50", "resnet18", "alexnet", "mobilenet", "cifar10", "cifar10_gpu")
IMAGENET_MODELS = {"resnet50": "resnet50", "resnet18": "resnet18", "alexnet": "alexnet",
                   "mobilenet": "mobilenet_v1"}


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  name, modifiers = configs.parse_variant(variant, VARIANTS, default="resnet50")
  c = supervised.base_config()
  c.whiten_samples = 0            # fast_cifar: images whose 2x2 patches set the first layer
  if name in IMAGENET_MODELS:
    _imagenet(c, IMAGENET_MODELS[name])
  else:
    _cifar10(c, gpu=name == "cifar10_gpu")
  if "smoke" in modifiers:
    _smoke(c)
  c.lock()
  return c


def _smoke(c: ml_collections.ConfigDict) -> None:
  """Seconds on seeded synthetic 32x32 images: a tiny ResNet for the ImageNet
  variants, the fast CIFAR net at a tiny width for the CIFAR ones."""
  configs.make_smoke(c, steps=60)
  c.data.name = "mock_images"
  c.data.image_size = 0
  c.data.augment = "flip_translate"
  c.dtype = "float32"
  c.eval_batch_size = 160
  c.optimizer.warmup_epochs = 0.0
  if c.model.name == "fast_cifar":
    c.model.widths = (8, 16, 16)
    c.whiten_samples = 200
    c.num_train_steps, c.checkpoint_every_steps = 40, 20
  else:
    c.model = ml_collections.ConfigDict(dict(name="cifar_resnet", depth=8, width=8))
    c.optimizer.learning_rate = 0.1
    c.optimizer.warmup_steps = 10


def _imagenet(c: ml_collections.ConfigDict, model: str) -> None:
  c.data.name = "imagenet2012"
  c.data.image_size = 224
  c.data.normalize = "standardize"
  c.model = ml_collections.ConfigDict(dict(name=model))
  c.dtype = "bfloat16"
  c.batch_size = 1024
  c.eval_batch_size = 1000
  c.num_epochs = 90.0
  c.eval_every_epochs = 5.0
  c.label_smoothing = 0.1
  c.optimizer.name = "nesterov"
  c.optimizer.momentum = 0.9
  # Scaled with the global batch (Goyal et al. 2017): follows --config.batch_size.
  del c.optimizer.learning_rate  # a plain float field cannot take a reference
  c.optimizer.learning_rate = ml_collections.FieldReference(0.1 / 256) * c.get_ref("batch_size")
  c.optimizer.weight_decay = 1e-4
  c.optimizer.schedule = "cosine"
  c.optimizer.warmup_epochs = 5.0
  if model == "alexnet":
    c.label_smoothing = 0.0
    c.optimizer.learning_rate = ml_collections.FieldReference(0.01 / 128) * c.get_ref("batch_size")
    c.optimizer.weight_decay = 5e-4
  elif model == "mobilenet_v1":
    c.optimizer.weight_decay = 4e-5


def _cifar10(c: ml_collections.ConfigDict, gpu: bool) -> None:
  c.data.name = "cifar10"
  c.data.normalize = "standardize"
  c.data.augment = "flip_translate"
  c.data.augment_pad = 2
  c.model = ml_collections.ConfigDict(dict(
      name="fast_cifar", widths=(64, 256, 256) if gpu else (32, 128, 128),
      conv="lax" if gpu else "im2col"))
  c.whiten_samples = 5000
  c.dtype = "bfloat16" if gpu else "float32"
  c.batch_size = 1024 if gpu else 512
  c.eval_batch_size = 1000
  c.num_epochs = 10.0 if gpu else 18.0   # CPU: what fits in 60 minutes on 2 cores
  c.eval_every_epochs = 1.0
  c.label_smoothing = 0.2
  c.test_time_flip = True
  c.optimizer.name = "nesterov"
  c.optimizer.momentum = 0.85
  c.optimizer.learning_rate = 0.2
  c.optimizer.weight_decay = 5e-4
  c.optimizer.schedule = "linear"
  c.optimizer.warmup_epochs = 2.0
  c.optimizer.frozen = ("whiten/kernel",)


def whitening(config: ml_collections.ConfigDict, ds: data.Dataset) -> dict | None:
  """fast_cifar's first-layer filters, computed from `whiten_samples` training images
  drawn with the run's seed (a pure function of config and data, so a resume computes
  the same ones); None when the model takes none."""
  if config.whiten_samples <= 0 or config.model.name != "fast_cifar":
    return None
  n = min(config.whiten_samples, len(ds.train))
  rows = np.random.default_rng(config.seed).choice(len(ds.train), n, replace=False)
  images = ds.transform(ds.train.gather(np.sort(rows)))["input"]
  return {"whiten": {"kernel": fast_cifar.whitening_kernel(images)}}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  ds = data.load(config.data)
  return supervised.run(config, workdir, dataset=ds, init_params=whitening(config, ds)).results


if __name__ == "__main__":
  cli.run(__file__, "imagenet_cnn", train_and_evaluate)
