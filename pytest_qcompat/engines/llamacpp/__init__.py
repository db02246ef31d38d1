"""llama.cpp through llama-cpp-python: adapter.py (worker), facts.py (pytest process)."""
