"""Fault injection for end-to-end search tests, loaded by every Python process.

Tests put this folder on PYTHONPATH, so Ray's worker processes import it at
start-up. When ``circtune.search.trainable`` is imported, its ``run_trial``
is wrapped: a trial whose ``loss/beta`` equals ``NAN_BETA`` raises the error
a diverging trial raises, and one whose ``loss/beta`` equals ``POOR_BETA``
reports validation losses a million times larger, so ASHA stops it.
"""

import importlib.abc
import importlib.machinery
import math
import sys

NAN_BETA = 0.000123
POOR_BETA = 0.000234
_TARGET = "circtune.search.trainable"


def _patch(module):
    from circtune.objective.train import NonFiniteLossError

    original = module.run_trial

    def run_trial(config, data, *, on_epoch=None, **kwargs):
        if config.loss.beta == NAN_BETA:
            raise NonFiniteLossError("reconstruction", epoch=1, value=math.nan)
        if config.loss.beta == POOR_BETA and on_epoch is not None:
            inner = on_epoch

            def on_epoch(epoch, metrics, score):
                inner(epoch, metrics, None if score is None else score._replace(loss=score.loss * 1e6))

        return original(config, data, on_epoch=on_epoch, **kwargs)

    module.run_trial = run_trial


class _Loader(importlib.abc.Loader):
    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        _patch(module)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != _TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader)
        return spec


sys.meta_path.insert(0, _Finder())
