"""Analysis tools: FLOPs and parameters of a model, referring-segmentation baselines and patch labels."""
