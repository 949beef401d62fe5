"""Reinforcement learning: environments (gymnax on device, ale-py Atari on the host with
the Nature preprocessing), a compact replay memory and the DQN agent."""
