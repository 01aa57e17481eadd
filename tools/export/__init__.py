"""Deployment tools: a config's model as an ONNX graph."""
