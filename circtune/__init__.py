"""circtune: hyperparameter search for transistor-table embeddings.

Trains variational autoencoders on transistor characterization tables and
scores each configuration by how well its embeddings extract Square Law
parameters of device flavors held out of training.
"""

__version__ = "0.1.0"
