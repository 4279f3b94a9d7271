"""Tokens of one line of eBPF assembly, each with the 1-based column where it starts.

Both dialects share this lexer: rbpf/uBPF text (``r1``) and bpf_conformance text
(``%r1``).  Comments run from ``#``, ``;`` or ``//`` to the end of the line.  The
lexer only classifies; range checks (register numbers, immediates) belong to the
assembler, which knows which operand it is reading.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from pybpf.errors import AssemblerError


class Kind(Enum):
    """What a token is."""

    WORD = "word"
    """Mnemonics, labels, keywords such as ``local``, pseudo-source names."""
    REGISTER = "register"
    NUMBER = "number"
    PUNCT = "punct"
    END = "end"


@dataclass(frozen=True, slots=True)
class Token:
    """One token: its kind, its text, where it starts and (registers, numbers) its value."""

    kind: Kind
    text: str
    column: int
    value: int = 0

    def describe(self) -> str:
        """How error messages quote the token."""
        return "end of line" if self.kind is Kind.END else f"'{self.text}'"


PUNCTUATION = frozenset(",[]+-():")

_WORD = re.compile(r"[A-Za-z_.][A-Za-z0-9_.]*")
_NUMBERISH = re.compile(r"[0-9][A-Za-z0-9_]*")
_NUMBER = re.compile(r"0[xX](?P<hex>[0-9a-fA-F]+)|(?P<dec>[0-9]+)")
_REGISTER = re.compile(r"[rR](?P<n>[0-9]+)")
_SPACE = re.compile(r"\s+")
_COMMENT_STARTS = ("#", ";", "//")


def parse_number(text: str) -> int | None:
    """Value of a decimal or ``0x`` hexadecimal literal (any case), or None if it is not one."""
    match = _NUMBER.fullmatch(text)
    if match is None:
        return None
    digits = match.group("hex")
    return int(digits, 16) if digits is not None else int(match.group("dec"))


def tokenize(line: str, lineno: int = 1) -> list[Token]:
    """Split one source line into tokens, ending with an END token; comments are dropped."""
    tokens: list[Token] = []
    pos = 0
    while pos < len(line):
        space = _SPACE.match(line, pos)
        if space:
            pos = space.end()
            continue
        if line.startswith(_COMMENT_STARTS, pos):
            break
        token = _next_token(line, pos, lineno)
        tokens.append(token)
        pos += len(token.text)
    end = tokens[-1].column + len(tokens[-1].text) if tokens else 1
    tokens.append(Token(Kind.END, "", end))
    return tokens


def _next_token(line: str, pos: int, lineno: int) -> Token:
    column = pos + 1
    char = line[pos]
    if char == "%":
        word = _WORD.match(line, pos + 1)
        register = _REGISTER.fullmatch(word.group()) if word else None
        if word is None or register is None:
            text = line[pos : word.end()] if word else "%"
            raise AssemblerError(f"invalid register '{text}'", lineno, column, line)
        return Token(Kind.REGISTER, line[pos : word.end()], column, int(register.group("n")))
    if word := _WORD.match(line, pos):
        register = _REGISTER.fullmatch(word.group())
        if register:
            return Token(Kind.REGISTER, word.group(), column, int(register.group("n")))
        return Token(Kind.WORD, word.group(), column)
    if numberish := _NUMBERISH.match(line, pos):
        value = parse_number(numberish.group())
        if value is None:
            raise AssemblerError(f"invalid number '{numberish.group()}'", lineno, column, line)
        return Token(Kind.NUMBER, numberish.group(), column, value)
    if char in PUNCTUATION:
        return Token(Kind.PUNCT, char, column)
    raise AssemblerError(f"unexpected character '{char}'", lineno, column, line)
