"""MLflow tracking: store, runs and artifacts of searches and trials."""
