"""Reading programs and data from files: assembly text, raw bytecode, or hex text."""

from __future__ import annotations

import re
from enum import Enum
from pathlib import Path

from pybpf.errors import LoadError
from pybpf.program import Program


class ProgramFormat(Enum):
    """How a program file is encoded."""

    ASM = "asm"
    RAW = "raw"
    HEX = "hex"


SUFFIX_FORMATS: dict[str, ProgramFormat] = {
    ".s": ProgramFormat.ASM,
    ".asm": ProgramFormat.ASM,
    ".bpf": ProgramFormat.RAW,
    ".bin": ProgramFormat.RAW,
    ".raw": ProgramFormat.RAW,
    ".hex": ProgramFormat.HEX,
    ".txt": ProgramFormat.HEX,
}
"""File name suffix to format; anything else must be named with ``--format``."""

_HEX_TOKEN = re.compile(r"(?:0[xX])?([0-9a-fA-F]+)")


def parse_hex(text: str, what: str = "hex data") -> bytes:
    """Bytes from hex text: ``b7 00 01``, ``b70001`` or ``0xb7 0x00``; ``#`` starts a comment."""
    data = bytearray()
    for line_number, line in enumerate(text.splitlines(), start=1):
        body = line.split("#", 1)[0]
        for match in re.finditer(r"\S+", body):
            token = match.group()
            hex_match = _HEX_TOKEN.fullmatch(token)
            if hex_match is None or len(hex_match.group(1)) % 2:
                raise ValueError(
                    f"{what}, line {line_number}, column {match.start() + 1}: "
                    f"{token!r} is not a whole number of hex bytes"
                )
            data += bytes.fromhex(hex_match.group(1))
    return bytes(data)


def detect_format(path: Path) -> ProgramFormat:
    found = SUFFIX_FORMATS.get(path.suffix.lower())
    if found is None:
        known = ", ".join(sorted(SUFFIX_FORMATS))
        raise LoadError(
            f"cannot tell the format of {path.name} from its suffix (known: {known}); "
            "name it with --format asm|raw|hex"
        )
    return found


def program_from_bytes(data: bytes, fmt: ProgramFormat, name: str = "") -> Program:
    """Decode, assemble or parse ``data`` according to ``fmt``."""
    if fmt is ProgramFormat.RAW:
        return Program.from_bytes(data, name)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LoadError(f"{name or 'input'} is not UTF-8 text (is it raw bytecode?)") from exc
    if fmt is ProgramFormat.HEX:
        try:
            return Program.from_bytes(parse_hex(text, name or "program"), name)
        except ValueError as exc:
            raise LoadError(str(exc)) from exc
    from pybpf.asm import assemble

    return assemble(text, name)


def read_program(path: str | Path, fmt: ProgramFormat | None = None) -> Program:
    """Load a program file, telling its format from the suffix unless ``fmt`` is given."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LoadError(f"cannot read {path}: {exc.strerror}") from exc
    return program_from_bytes(data, fmt or detect_format(path), path.name)
