"""The pure-Python compiling tier: each eBPF function becomes one Python function.

The program is translated once into Python source (:mod:`.generator`): registers
become local variables, control flow becomes structured Python (loops as
``while`` loops, :mod:`.structure`), masks are written only where value ranges
say a result may leave its width (:mod:`pybpf.verifier.ranges`), and memory checks are
inlined as range tests against the stack and input regions, left out for accesses the
ranges place inside the current frame, and alignment tests left out where the
known low bits decide them.  bpf-to-bpf calls are Python calls, so callee-saved
registers stay in the caller's locals.

The meter is exact wherever a run can end or be observed.  Each block's length
is added to the count, and the budget is tested only where an acyclic stretch of
code begins (function entry, each backward jump, after each bpf-to-bpf call),
against the longest forward path to the next test.  When that path could
overrun, the run is handed to the reference interpreter right there with the
exact machine state, so budget traps (and anything else that happens in that
last stretch) match the interpreter instruction for instruction.  A loop whose
passes a counter bounds (:mod:`~pybpf.verifier.counted`) also comes without its
backward-jump tests, and that copy runs when the budget covers its most passes; when such a
loop is one block, that copy adds its count once, after the loop, from the number
of passes (nothing in it reads the count, and a fault reports none).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property

from pybpf.isa.semantics import MASK64
from pybpf.program import Program
from pybpf.runtime.machine import Machine, MachineConfig
from pybpf.tiers.interp import CompiledInterpreter, check_supported
from pybpf.tiers.pycode.generator import Generator
from pybpf.tiers.pycode.support import Deoptimize, Stop, namespace


class CompiledPython:
    """A program translated to Python functions, with the interpreter as its fallback."""

    def __init__(self, program: Program, config: MachineConfig) -> None:
        check_supported(program)
        self.program = program
        self.config = config
        generator = Generator(program, config)
        self.source = generator.generate()
        self._stack_top = generator.stack_top
        names = namespace()
        code = compile(self.source, f"<pybpf pycode {program.name or 'program'}>", "exec")
        exec(code, names)
        self._main: Callable[..., tuple[int, ...]] = names["f0"]

    @cached_property
    def _reference(self) -> CompiledInterpreter:
        """The reference tier, built on first need: budget hand-overs and fallbacks."""
        return CompiledInterpreter(self.program)

    def listing(self) -> str:
        """The generated Python source."""
        return self.source

    def run(self, m: Machine) -> int:
        if m.config is not self.config and m.config != self.config:
            # the limits are compiled in; a machine with others runs on the reference
            return self._reference.run(m)
        regs = m.regs
        stack = m.stack
        if regs[10] != self._stack_top or stack.vm_end != self._stack_top or stack.base & 7:
            # the code assumes the stack Machine.create lays out (8-aligned base and
            # frames, the main frame at the top), and a machine that differs runs on
            # the reference
            return self._reference.run(m)
        try:
            result = self._main(m, *regs, 0, 1)
        except Deoptimize as deopt:
            frames = list(reversed(deopt.frames))
            return self._reference.resume(m, deopt.pc, deopt.count, deopt.regs, frames)
        except Stop as stop:
            regs[0] = stop.r0 & MASK64
            m.instructions = stop.count
            return regs[0]
        regs[0:6] = result[0:6]
        m.instructions = result[6]
        return regs[0]


class PythonCodeTier:
    """Compiles to Python source; available everywhere."""

    name = "pycode"

    def unavailable_reason(self) -> str | None:
        return None

    def compile(self, program: Program, config: MachineConfig) -> CompiledPython:
        return CompiledPython(program, config)
