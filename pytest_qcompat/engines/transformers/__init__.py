"""Hugging Face transformers: adapter.py (worker), limits.py (its interpreter), facts.py (pytest process)."""
