"""Training stages (SFT, reward model, PPO) on Parley exports, runnable without Django.

Everything in this package imports neither Django nor any other Parley app, so the entry point
(`python -m trainer_bridge.training.entry`) runs on a GPU box or a cluster node that only has
torch, transformers, accelerate, datasets and TRL. `stages` is the one module that touches TRL's
trainer classes; `hyperparameters`, `checks`, `reward_eval` and `events` import torch and
transformers lazily, so the web process can use them.
"""
