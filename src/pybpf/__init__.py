"""pybpf: a user-space eBPF runtime.

Load eBPF programs (raw bytecode or assembly), check them and run them, from
Python or from the ``pybpf`` command.  This module holds the public API only.
"""

from pybpf.asm import ProgramBuilder, assemble, disassemble
from pybpf.errors import (
    AssemblerError,
    BpfError,
    BudgetExceededError,
    CallDepthExceededError,
    DecodeError,
    ExecutionError,
    HelperError,
    InvalidProgramError,
    MemoryAccessError,
    TierUnavailableError,
    TrapKind,
    UnknownHelperError,
    VerifierError,
)
from pybpf.program import Program
from pybpf.runtime.helpers import HelperRegistry, conformance_helpers, default_helpers
from pybpf.runtime.machine import Machine
from pybpf.runtime.memory import MemoryRegion
from pybpf.tiers import available_tiers
from pybpf.vm import VM, FixedMbuffVM, RunResult

__version__ = "0.1.0"

__all__ = [
    "VM",
    "ProgramBuilder",
    "assemble",
    "disassemble",
    "AssemblerError",
    "BpfError",
    "BudgetExceededError",
    "CallDepthExceededError",
    "DecodeError",
    "ExecutionError",
    "FixedMbuffVM",
    "HelperError",
    "HelperRegistry",
    "InvalidProgramError",
    "Machine",
    "MemoryAccessError",
    "MemoryRegion",
    "Program",
    "RunResult",
    "TierUnavailableError",
    "TrapKind",
    "UnknownHelperError",
    "VerifierError",
    "available_tiers",
    "conformance_helpers",
    "default_helpers",
]
