"""Training and evaluation: the paper's recipe, resumable atomic checkpoints, DDP."""
