"""Training entry points (video predictor, distance function and baselines)."""
