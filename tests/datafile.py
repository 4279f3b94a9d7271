"""The data-driven test cases under ``tests/data``: their file format, a strict parser,
and the one function that runs a case on a tier and checks what it produced.

Every execution tier runs the same ``.data`` files, so they are the project's
semantic contract.  A file holds one case::

    # comment lines start with '#'
    -- asm                      assembly text (or -- raw: program bytes in hex)
    mov r0, 1
    exit
    -- mem                      input memory, hex bytes
    00 01 02 03
    -- region 0x40000000 ro     an extra region (ro or rw) at that VM address
    aa bb
    -- options                  key=value lines: budget, max-call-depth,
    budget=100                  stack-size, mem=readonly|readwrite,
                                helpers=default|conformance|none
    -- result                   expected r0 (compared as u64) ...
    0x1
    -- error memory-access 3    ... or an expected failure KIND [PC]
    -- mem-after                expected input memory after the run
    00 01 02 04
    -- instructions             expected count of executed instructions (with -- result)
    4

Parsing never imports pybpf, so a broken file is reported as a broken file; the
runner part (:func:`run_case`, :func:`check_case`) is what needs the package.
Tests compare error types, trap kinds and instruction indexes, never messages.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pybpf import HelperRegistry, Program

DATA_DIR = Path(__file__).parent / "data"
SUFFIX = ".data"

U64 = (1 << 64) - 1

REFERENCE_TIER = "interp"
"""The tier that defines the semantics; only it must stop exactly at the budget."""

TRAP_KINDS = (
    "memory-access",
    "budget-exceeded",
    "call-depth-exceeded",
    "unknown-helper",
    "helper-failure",
)
"""Run-time trap kinds, spelled as in the files; each names a ``TrapKind`` member."""

LOAD_KINDS = ("decode", "verify")
"""Load-time failures: ``DecodeError`` (bytes) and ``VerifierError`` (structure)."""

ERROR_KINDS = (*TRAP_KINDS, *LOAD_KINDS)

HELPER_SETS = ("default", "conformance", "none")

SECTIONS = (
    "asm",
    "raw",
    "mem",
    "region",
    "options",
    "result",
    "mem-after",
    "instructions",
    "error",
)
_REPEATABLE = frozenset({"region"})
_HEADER = re.compile(r"^--\s+(\S+)\s*(.*?)\s*$")
_HEX_BYTE = re.compile(r"^[0-9A-Fa-f]{2}$")


class DataFileError(Exception):
    """A malformed ``.data`` file; names the file and the 1-based line."""

    def __init__(self, path: Path | str, line: int, message: str) -> None:
        self.path = Path(path)
        self.line = line
        self.message = message
        super().__init__(f"{self.path}:{line}: {message}")


@dataclass(frozen=True)
class Region:
    """An extra memory region the case maps before running."""

    vm_start: int
    writable: bool
    data: bytes
    line: int


@dataclass(frozen=True)
class Options:
    budget: int | None = None
    max_call_depth: int | None = None
    stack_size: int | None = None
    mem_writable: bool = True
    helpers: str | None = None
    """``None`` leaves the VM's default helper set."""


@dataclass(frozen=True)
class ExpectedError:
    kind: str
    """One of :data:`ERROR_KINDS`."""
    pc: int | None
    """Instruction index (8-byte slots) the error names; ``None`` accepts any."""

    @property
    def at_load(self) -> bool:
        return self.kind in LOAD_KINDS


@dataclass(frozen=True)
class DataCase:
    """One parsed ``.data`` file."""

    name: str
    """Path below the data directory without the suffix, e.g. ``alu64/add-imm``."""
    path: Path
    asm: str | None
    asm_line: int
    """File line of the first assembly line, to map assembler errors back."""
    raw: bytes | None
    mem: bytes | None
    regions: tuple[Region, ...]
    options: Options
    result: int | None
    error: ExpectedError | None
    mem_after: bytes | None
    instructions: int | None = None
    """Instructions a successful run executes (a 64-bit immediate load counts once)."""
    comment: str = ""
    """The leading comment lines, which say what the case pins down and why."""

    def program(self) -> Program:
        """The case's program, assembled or decoded (may raise ``DecodeError``)."""
        from pybpf import AssemblerError, Program

        if self.raw is not None:
            return Program.from_bytes(self.raw, name=self.name)
        from pybpf import assemble

        if self.asm is None:
            raise DataFileError(self.path, 1, "the case has neither -- asm nor -- raw")
        try:
            return assemble(self.asm)
        except AssemblerError as exc:
            line = self.asm_line + exc.line - 1
            raise DataFileError(self.path, line, f"assembler: {exc.message}") from exc


# -- parsing -------------------------------------------------------------------------


@dataclass
class _Section:
    name: str
    argument: str
    line: int
    body: list[tuple[int, str]] = field(default_factory=list)


def _strip_comment(text: str) -> str:
    return text.split("#", 1)[0].strip()


def _parse_int(path: Path, line: int, token: str, what: str) -> int:
    try:
        return int(token, 0)
    except ValueError:
        raise DataFileError(path, line, f"{what}: {token!r} is not an integer") from None


def _parse_hex(path: Path, section: _Section) -> bytes:
    data = bytearray()
    for number, text in section.body:
        for token in _strip_comment(text).split():
            if not _HEX_BYTE.match(token):
                raise DataFileError(
                    path, number, f"-- {section.name}: {token!r} is not a two-digit hex byte"
                )
            data.append(int(token, 16))
    return bytes(data)


def _meaningful_lines(section: _Section) -> list[tuple[int, str]]:
    return [(n, t) for n, t in ((n, _strip_comment(t)) for n, t in section.body) if t]


def _no_body(path: Path, section: _Section) -> None:
    for number, text in _meaningful_lines(section):
        raise DataFileError(path, number, f"-- {section.name} takes no body, found {text!r}")


def _no_argument(path: Path, section: _Section) -> None:
    if section.argument:
        raise DataFileError(
            path, section.line, f"-- {section.name} takes no argument, found {section.argument!r}"
        )


def _parse_result(path: Path, section: _Section) -> int:
    _no_argument(path, section)
    lines = _meaningful_lines(section)
    if len(lines) != 1 or len(lines[0][1].split()) != 1:
        raise DataFileError(path, section.line, "-- result needs exactly one value")
    number, token = lines[0]
    value = _parse_int(path, number, token, "-- result")
    if not -(1 << 63) <= value <= U64:
        raise DataFileError(path, number, f"-- result: {token} does not fit in 64 bits")
    return value & U64


def _parse_count(path: Path, section: _Section) -> int:
    _no_argument(path, section)
    lines = _meaningful_lines(section)
    if len(lines) != 1 or len(lines[0][1].split()) != 1:
        raise DataFileError(path, section.line, f"-- {section.name} needs exactly one value")
    number, token = lines[0]
    value = _parse_int(path, number, token, f"-- {section.name}")
    if value < 0:
        raise DataFileError(path, number, f"-- {section.name}: {token} is negative")
    return value


def _parse_error(path: Path, section: _Section) -> ExpectedError:
    _no_body(path, section)
    words = section.argument.split()
    if not 1 <= len(words) <= 2:
        raise DataFileError(path, section.line, "-- error needs a KIND and an optional PC")
    kind = words[0]
    if kind not in ERROR_KINDS:
        raise DataFileError(
            path, section.line, f"-- error: unknown kind {kind!r} (known: {', '.join(ERROR_KINDS)})"
        )
    pc = None
    if len(words) == 2:
        pc = _parse_int(path, section.line, words[1], "-- error pc")
        if pc < 0:
            raise DataFileError(path, section.line, f"-- error: pc {pc} is negative")
    return ExpectedError(kind, pc)


def _positive(path: Path, line: int, key: str, value: str) -> int:
    number = _parse_int(path, line, value, f"option {key}")
    if number < 1:
        raise DataFileError(path, line, f"option {key} must be at least 1, not {number}")
    return number


def _parse_options(path: Path, section: _Section) -> Options:
    _no_argument(path, section)
    values: dict[str, object] = {}
    seen: set[str] = set()
    for number, text in _meaningful_lines(section):
        key, equals, value = (part.strip() for part in text.partition("="))
        if not equals or not key or not value:
            raise DataFileError(path, number, f"option {text!r} is not key=value")
        if key in seen:
            raise DataFileError(path, number, f"option {key} given twice")
        seen.add(key)
        if key == "budget":
            values["budget"] = _positive(path, number, key, value)
        elif key == "max-call-depth":
            values["max_call_depth"] = _positive(path, number, key, value)
        elif key == "stack-size":
            values["stack_size"] = _positive(path, number, key, value)
        elif key == "mem":
            if value not in ("readonly", "readwrite"):
                raise DataFileError(path, number, f"option mem={value}: use readonly or readwrite")
            values["mem_writable"] = value == "readwrite"
        elif key == "helpers":
            if value not in HELPER_SETS:
                raise DataFileError(
                    path, number, f"option helpers={value}: use one of {', '.join(HELPER_SETS)}"
                )
            values["helpers"] = value
        else:
            raise DataFileError(path, number, f"unknown option {key!r}")
    return Options(**values)  # type: ignore[arg-type]


def _parse_region(path: Path, section: _Section) -> Region:
    words = section.argument.split()
    if len(words) != 2 or words[1] not in ("ro", "rw"):
        raise DataFileError(path, section.line, "-- region needs an ADDRESS and ro or rw")
    start = _parse_int(path, section.line, words[0], "-- region address")
    if not 0 < start < 1 << 32:
        raise DataFileError(path, section.line, f"-- region address {start:#x} is not a VM address")
    return Region(start, words[1] == "rw", _parse_hex(path, section), section.line)


def _split_sections(path: Path, text: str) -> tuple[str, list[_Section]]:
    comment: list[str] = []
    sections: list[_Section] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("--"):
            match = _HEADER.match(line)
            if match is None or match.group(1) not in SECTIONS:
                name = match.group(1) if match else line
                raise DataFileError(
                    path, number, f"unknown section {name!r} (known: {', '.join(SECTIONS)})"
                )
            sections.append(_Section(match.group(1), match.group(2), number))
        elif sections:
            sections[-1].body.append((number, line))
        elif line.strip() and not line.lstrip().startswith("#"):
            raise DataFileError(path, number, f"text before the first section: {line.strip()!r}")
        elif line.strip():
            comment.append(line.lstrip()[1:].strip())
    return "\n".join(comment), sections


def parse_text(text: str, path: Path | str, name: str | None = None) -> DataCase:
    """Parse the contents of one ``.data`` file; ``path`` is used in error messages."""
    path = Path(path)
    comment, sections = _split_sections(path, text)
    by_name: dict[str, _Section] = {}
    regions: list[Region] = []
    for section in sections:
        if section.name in _REPEATABLE:
            regions.append(_parse_region(path, section))
            continue
        if section.name in by_name:
            first = by_name[section.name].line
            raise DataFileError(
                path, section.line, f"second -- {section.name} section (first at line {first})"
            )
        by_name[section.name] = section

    end_line = len(text.splitlines()) or 1
    if ("asm" in by_name) == ("raw" in by_name):
        raise DataFileError(path, end_line, "a case needs exactly one of -- asm and -- raw")
    if ("result" in by_name) == ("error" in by_name):
        raise DataFileError(path, end_line, "a case needs exactly one of -- result and -- error")

    asm = raw = None
    asm_line = 0
    if "asm" in by_name:
        section = by_name["asm"]
        _no_argument(path, section)
        asm = "\n".join(text for _, text in section.body)
        asm_line = section.line + 1
        if not _meaningful_lines(section):
            raise DataFileError(path, section.line, "-- asm is empty (use -- raw for no bytes)")
    else:
        _no_argument(path, by_name["raw"])
        raw = _parse_hex(path, by_name["raw"])

    mem = None
    if "mem" in by_name:
        _no_argument(path, by_name["mem"])
        mem = _parse_hex(path, by_name["mem"])
    options = _parse_options(path, by_name["options"]) if "options" in by_name else Options()
    if not options.mem_writable and mem is None:
        raise DataFileError(path, by_name["options"].line, "option mem=readonly without -- mem")

    result = _parse_result(path, by_name["result"]) if "result" in by_name else None
    error = _parse_error(path, by_name["error"]) if "error" in by_name else None

    instructions = None
    if "instructions" in by_name:
        instructions = _parse_count(path, by_name["instructions"])
        if error is not None:
            raise DataFileError(path, by_name["instructions"].line, "-- instructions with -- error")

    mem_after = None
    if "mem-after" in by_name:
        section = by_name["mem-after"]
        _no_argument(path, section)
        if mem is None:
            raise DataFileError(path, section.line, "-- mem-after without -- mem")
        mem_after = _parse_hex(path, section)
        if len(mem_after) != len(mem):
            raise DataFileError(
                path,
                section.line,
                f"-- mem-after has {len(mem_after)} bytes but -- mem has {len(mem)}",
            )
        if error is not None and error.at_load:
            raise DataFileError(path, section.line, "-- mem-after with a load-time error")

    ordered = sorted(regions, key=lambda region: region.vm_start)
    for low, high in zip(ordered, ordered[1:], strict=False):
        if high.vm_start < low.vm_start + len(low.data):
            raise DataFileError(path, high.line, f"region {high.vm_start:#x} overlaps another")

    return DataCase(
        name=name if name is not None else path.stem,
        path=path,
        asm=asm,
        asm_line=asm_line,
        raw=raw,
        mem=mem,
        regions=tuple(regions),
        options=options,
        result=result,
        error=error,
        mem_after=mem_after,
        instructions=instructions,
        comment=comment,
    )


def case_name(path: Path, root: Path = DATA_DIR) -> str:
    return path.relative_to(root).with_suffix("").as_posix()


def parse_file(path: Path, root: Path = DATA_DIR) -> DataCase:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataFileError(path, 1, f"not UTF-8 text: {exc}") from exc
    return parse_text(text, path, case_name(path, root))


def case_files(root: Path = DATA_DIR) -> list[Path]:
    """Every ``.data`` file below ``root``, in a stable order."""
    return sorted(root.rglob(f"*{SUFFIX}"))


def load_cases(root: Path = DATA_DIR) -> Iterator[DataCase]:
    """Parse every case below ``root``; the first malformed file raises."""
    for path in case_files(root):
        yield parse_file(path, root)


# -- running and checking ----------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What running a case produced: r0 or an exception, and the input memory after."""

    r0: int | None
    error: Exception | None
    mem: bytes | None
    instructions: int | None = None


class CaseMismatch(AssertionError):
    """A case whose outcome differs from its expectations (an ordinary test failure)."""


def _helpers(case: DataCase) -> HelperRegistry | None:
    """The helper set the case asks for; ``None`` keeps the VM's default."""
    from pybpf import HelperRegistry, conformance_helpers, default_helpers

    choice = case.options.helpers
    if choice == "conformance":
        return conformance_helpers()
    if choice == "none":
        return HelperRegistry()
    if choice == "default":
        return default_helpers()
    return None


def run_case(case: DataCase, tier: str) -> Outcome:
    """Load and run ``case`` on ``tier``; failures the case may expect are captured.

    Load-time ``DecodeError``/``VerifierError`` and run-time ``ExecutionError`` end
    up in :attr:`Outcome.error`; anything else (including a malformed case or an
    assembler error) propagates.
    """
    from pybpf import VM, DecodeError, ExecutionError, VerifierError

    mem = bytearray(case.mem) if case.mem is not None else None
    try:
        program = case.program()
        settings: dict[str, object] = {"tier": tier, "helpers": _helpers(case)}
        for key in ("budget", "max_call_depth", "stack_size"):
            value = getattr(case.options, key)
            if value is not None:
                settings[key] = value
        vm = VM(program, **settings)  # type: ignore[arg-type]
    except (DecodeError, VerifierError) as exc:
        return Outcome(None, exc, None)
    for index, region in enumerate(case.regions):
        vm.add_region(
            f"region{index}",
            bytearray(region.data),
            vm_start=region.vm_start,
            writable=region.writable,
        )
    try:
        result = vm.execute(mem, mem_writable=case.options.mem_writable)
    except ExecutionError as exc:
        return Outcome(None, exc, bytes(mem) if mem is not None else None)
    return Outcome(result.r0, None, bytes(mem) if mem is not None else None, result.instructions)


def _describe(error: Exception) -> str:
    kind = getattr(error, "kind", None)
    pc = getattr(error, "pc", None)
    label = type(error).__name__ + (f"[{kind.name}]" if kind is not None else "")
    return f"{label} at pc {pc}: {error}"


def _error_kind(error: Exception) -> str | None:
    """The file spelling of an error's kind, or None if it is no kind a case can expect."""
    from pybpf import DecodeError, ExecutionError, VerifierError

    if isinstance(error, DecodeError):
        return "decode"
    if isinstance(error, VerifierError):
        return "verify"
    if isinstance(error, ExecutionError):
        return error.kind.name.lower().replace("_", "-")
    return None


def check_case(case: DataCase, outcome: Outcome, tier: str) -> None:
    """Raise :class:`CaseMismatch` listing every way ``outcome`` differs from ``case``."""
    problems: list[str] = []
    if case.error is None:
        if outcome.error is not None:
            problems.append(f"expected r0 = {case.result:#x}, got {_describe(outcome.error)}")
        elif outcome.r0 != case.result:
            got = "nothing" if outcome.r0 is None else f"{outcome.r0:#x}"
            problems.append(f"expected r0 = {case.result:#x}, got {got}")
    else:
        expected = case.error
        where = f" at pc {expected.pc}" if expected.pc is not None else ""
        if outcome.error is None:
            got = "nothing" if outcome.r0 is None else f"r0 = {outcome.r0:#x}"
            problems.append(f"expected {expected.kind}{where}, got {got}")
        else:
            kind = _error_kind(outcome.error)
            pc = getattr(outcome.error, "pc", None)
            # Native tiers may check the meter once per block (DESIGN.md): for them
            # only the kind of a budget trap must match, not where it struck.
            exact_pc = expected.kind != "budget-exceeded" or tier == REFERENCE_TIER
            wrong_pc = expected.pc is not None and exact_pc and pc != expected.pc
            if kind != expected.kind or wrong_pc:
                problems.append(f"expected {expected.kind}{where}, got {_describe(outcome.error)}")
    if case.instructions is not None and outcome.instructions != case.instructions:
        problems.append(
            f"expected {case.instructions} instructions executed, got {outcome.instructions}"
        )
    if case.mem_after is not None and outcome.mem != case.mem_after:
        got = "nothing" if outcome.mem is None else outcome.mem.hex(" ")
        problems.append(f"memory after the run: expected {case.mem_after.hex(' ')}, got {got}")
    if problems:
        raise CaseMismatch(f"{case.name} [{tier}]: " + "; ".join(problems))
