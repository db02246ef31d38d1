"""Producers of quantized checkpoints from a base model (run in an engine's interpreter)."""
