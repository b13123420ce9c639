"""jaxssl: self-supervised pretraining in JAX/Flax (SimCLR, MoCo v2/v3, BERT MLM, MAE)."""

__version__ = "0.1.0"
