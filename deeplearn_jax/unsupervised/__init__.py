"""Trainers of unsupervised models with their own learning rules (RBMs by contrastive
divergence), built from the same data, mesh, checkpoint and metrics parts as the
supervised loop."""
