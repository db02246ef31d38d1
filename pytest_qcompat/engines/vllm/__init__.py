"""vLLM: adapter.py (worker), limits.py (vLLM's interpreter), facts.py (pytest process)."""
