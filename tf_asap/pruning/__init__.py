"""What to prune: activation statistics, importance criteria, thresholds (Algorithm 3) and policies."""
