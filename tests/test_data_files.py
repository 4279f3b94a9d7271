"""Run every ``tests/data/**/*.data`` case on every execution tier.

Test ids read ``alu64/add-imm[interp]``.  A tier that cannot run here skips with
its reason; a malformed file fails under its own name instead of vanishing.
"""

from __future__ import annotations

import pytest

from datafile import (
    DATA_DIR,
    DataCase,
    DataFileError,
    case_files,
    case_name,
    check_case,
    parse_file,
    run_case,
)
from pybpf.tiers import available_tiers

MINIMUM_CASES = 200
"""Guards against a glob or layout change silently dropping most of the suite."""


def _params() -> list[object]:
    tiers = available_tiers()
    params: list[object] = []
    for path in case_files():
        try:
            case: DataCase | DataFileError = parse_file(path)
        except DataFileError as exc:
            case = exc
        for tier, reason in tiers:
            marks = [pytest.mark.skip(reason=f"tier {tier}: {reason}")] if reason else []
            params.append(pytest.param(case, tier, id=f"{case_name(path)}[{tier}]", marks=marks))
    return params


@pytest.mark.parametrize(("case", "tier"), _params())
def test_data_file(case: DataCase | DataFileError, tier: str) -> None:
    if isinstance(case, DataFileError):
        raise case
    check_case(case, run_case(case, tier), tier)


def test_suite_is_complete() -> None:
    files = case_files()
    assert len(files) >= MINIMUM_CASES, f"only {len(files)} cases under {DATA_DIR}"
    assert all(path.parent != DATA_DIR for path in files), "every case belongs in a topic folder"
