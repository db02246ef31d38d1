"""Shared test setup: the fault-injecting engine is importable by worker processes."""
import os
from pathlib import Path

TESTS = Path(__file__).parent / "tests"
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH", "")) if p)
