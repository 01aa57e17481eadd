"""Checkpoint converters: official / timm / torchvision / Hugging Face weights -> our state dicts."""
