"""Model families by name. `create(config.model, num_classes, dtype)` is how trainers build
one, so a trainer never names a model and an experiment picks it with `model.name`; the
other keys of config.model are the family's fields."""

import ml_collections

from deeplearn_jax.errors import UserError
from deeplearn_jax.models.alexnet import AlexNet
from deeplearn_jax.models.fast_cifar import FastCifarNet
from deeplearn_jax.models.lenet import LeNet5
from deeplearn_jax.models.mlp import MLP
from deeplearn_jax.models.mobilenet import MobileNetV1
from deeplearn_jax.models.q_networks import ConvQNetwork
from deeplearn_jax.models.recursive import TreeClassifier
from deeplearn_jax.models.resnet import CifarResNet, ResNet18, ResNet34, ResNet50, ResNet101
from deeplearn_jax.models.rnn import HierarchicalRNN, RNNClassifier
from deeplearn_jax.models.transformer import Transformer
from deeplearn_jax.models.spectrogram_cnn import SpectrogramCNN

REGISTRY = {
    "mlp": MLP,
    "lenet5": LeNet5,
    "alexnet": AlexNet,
    "resnet18": ResNet18,
    "resnet34": ResNet34,
    "resnet50": ResNet50,
    "resnet101": ResNet101,
    "cifar_resnet": CifarResNet,
    "mobilenet_v1": MobileNetV1,
    "fast_cifar": FastCifarNet,
    "rnn": RNNClassifier,
    "hierarchical_rnn": HierarchicalRNN,
    "conv_q_network": ConvQNetwork,
    "transformer": Transformer,
    "tree": TreeClassifier,
    "spectrogram_cnn": SpectrogramCNN,
}


def create(config: ml_collections.ConfigDict, num_classes: int, dtype: str = "float32"):
  """The model `config.name` names, built with the other keys of `config` as its fields."""
  kwargs = {k: v for k, v in config.to_dict().items() if k != "name"}
  try:
    cls = REGISTRY[config.name]
  except KeyError:
    raise UserError(f"unknown model {config.name!r}; known: {', '.join(REGISTRY)}") from None
  # Sequences come back from config.json as lists; flax fields must be hashable.
  kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
  try:
    return cls(num_classes=num_classes, dtype=dtype, **kwargs)
  except (TypeError, ValueError) as e:
    raise UserError(f"config.model for {config.name}: {e}") from None
