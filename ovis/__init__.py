"""ovis: gradient estimators for importance-weighted variational bounds.

Reproduces "Optimal Variance Control of the Score Function Gradient Estimator for
Importance Weighted Bounds" (Lievin, Dittadi, Christensen, Winther; NeurIPS 2020).

Entry points:
    ovis.estimators.config.parse_estimator_id  -- estimator id -> (class, config)
    ovis.evaluate(model, x, iw=5000)           -- the bound L_K of each data point
    ovis.models.get_model                      -- model name -> nn.Module (TemplateModel)
    ovis.datasets.get_datasets                 -- data set name -> train/valid/test splits
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    """``ovis.evaluate`` is imported on first use, so that ``import ovis`` stays light."""
    if name == "evaluate":
        from ovis.estimators.evaluation import evaluate

        return evaluate
    raise AttributeError(f"module 'ovis' has no attribute {name!r}")
