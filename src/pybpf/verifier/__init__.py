"""Load-time program checks."""

from pybpf.verifier.structural import check_structure

__all__ = ["check_structure"]
