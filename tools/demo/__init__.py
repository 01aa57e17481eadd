"""What ``make demo`` runs: train, evaluate and visualize a small model on the shapes data."""
