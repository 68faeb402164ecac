"""Hyperparameter search: experiment files, search spaces and the search engine."""
