"""Dataset tools: generate and verify the synthetic shapes datasets."""
