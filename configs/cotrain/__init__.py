"""Training configs (see README, "Training")."""
