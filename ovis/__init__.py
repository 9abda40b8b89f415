"""ovis: gradient estimators for importance-weighted variational bounds.

Reproduces "Optimal Variance Control of the Score Function Gradient Estimator for
Importance Weighted Bounds" (Lievin, Dittadi, Christensen, Winther; NeurIPS 2020).

Entry points:
    ovis.estimators.config.parse_estimator_id  -- estimator id -> (class, config)
    ovis.evaluate(model, x, iw=5000)           -- the bound L_K of each data point
    ovis.models.get_model                      -- model name -> nn.Module (TemplateModel)
    ovis.datasets.get_datasets                 -- data set name -> train/valid/test splits
    ovis.register_estimator(family)            -- add an estimator family (ovis.estimators.registry)
    ovis.set_threads(n)                        -- PyTorch's CPU threads, as run.py --threads sets them
    ovis.Loss, ovis.WakeSleepSteps             -- any estimator on black-box inference network and
                                                  generative model objects (ovis.estimators.blackbox)

``import ovis`` stays cheap: the names above, and the subpackages (``ovis.estimators``,
``ovis.estimators.pyro``, ``ovis.models``, ...), are imported on first use.
"""

__version__ = "0.1.0"

_LAZY = {"Loss": "ovis.estimators.blackbox", "WakeSleepSteps": "ovis.estimators.blackbox",
         "evaluate": "ovis.estimators.evaluation", "register_estimator": "ovis.estimators.registry",
         "EstimatorFamily": "ovis.estimators.registry", "Style": "ovis.estimators.registry",
         "set_threads": "ovis.devices"}


_SUBPACKAGES = ("analysis", "datasets", "estimators", "models", "queue", "reporting", "testing", "training")


def __getattr__(name):
    import importlib
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBPACKAGES:
        return importlib.import_module(f"ovis.{name}")
    raise AttributeError(f"module 'ovis' has no attribute {name!r}")
