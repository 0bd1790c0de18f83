"""Few-label transfer: contrastive pretraining (SimCLR, target-aware re-balancing), k-shot evaluation
(linear probe, weighted kNN, fine-tuning), clustering quality, and progressive sample selection
(anchor-constrained k-means), after Li et al. 2021, arXiv 2107.12369."""
