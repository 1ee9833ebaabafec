"""iov-env: energy-constrained federated LoRA rank scheduling in edge-assisted IoV (arXiv 2508.09532)."""

__version__ = "0.1.0"
