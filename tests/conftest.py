import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# hack/ holds the local control plane helper; it is a script folder, not a package.
sys.path.insert(0, str(REPO / "hack"))
sys.path.insert(0, str(REPO / "tests"))  # harness.py
