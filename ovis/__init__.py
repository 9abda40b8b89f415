"""ovis: gradient estimators for importance-weighted variational bounds.

Reproduces "Optimal Variance Control of the Score Function Gradient Estimator for
Importance Weighted Bounds" (Lievin, Dittadi, Christensen, Winther; NeurIPS 2020).

Entry points:
    ovis.estimators.config.parse_estimator_id  -- estimator id -> (class, config)
    ovis.models.get_model                      -- model name -> nn.Module (TemplateModel)
    ovis.datasets.get_datasets                 -- data set name -> train/valid/test splits
"""

__version__ = "0.1.0"
