"""Collects the OpInfo suite's outcomes and prints its coverage summary at the end of the run."""

from __future__ import annotations

import collections

import pytest

_RESULTS: dict[str, tuple[str, str]] = {}  # nodeid -> (outcome, reason)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "test_opinfo_sample_matches_eager[" not in report.nodeid:
        return
    if report.when == "call" or (report.when == "setup" and not report.passed):
        reason = getattr(report, "wasxfail", "")
        if report.passed:
            outcome = "passed"
        elif report.skipped and reason:
            outcome = "xfailed"
        elif report.skipped:
            outcome = "skipped"
        else:
            outcome = "failed"
        _RESULTS[report.nodeid] = (outcome, reason)


def _op_of(nodeid: str) -> str:
    return nodeid.split("[", 1)[1].rsplit("-", 2)[0]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _RESULTS:
        return
    from opinfo_harness import aten_names, lowered_names, op_id, selected_ops

    by_outcome = collections.Counter(o for o, _ in _RESULTS.values())
    reasons = collections.Counter(r for o, r in _RESULTS.values() if o == "xfailed")
    ops_run = {_op_of(n) for n in _RESULTS}
    ops_passing = {_op_of(n) for n, (o, _) in _RESULTS.items() if o == "passed"}
    by_id = {op_id(op): op for op in selected_ops()}
    aten_hit = set().union(*(aten_names(by_id[o]) for o in ops_passing if o in by_id))
    tw = terminalreporter
    tw.section("OpInfo conformance summary")
    tw.line(
        f"OpInfos run: {len(ops_run)}, with at least one passing sample: {len(ops_passing)}; "
        f"lowering-table ops (by name) with a passing OpInfo sample: {len(aten_hit)} of "
        f"{len(lowered_names())}"
    )
    tw.line(
        f"samples: {len(_RESULTS)} run, {by_outcome['passed']} passed, "
        f"{by_outcome['xfailed']} xfailed (known, strict), {by_outcome['failed']} failed"
        + (f", {by_outcome['skipped']} skipped" if by_outcome["skipped"] else "")
    )
    untested = sorted(lowered_names() - set().union(*(aten_names(op) for op in selected_ops())))
    tw.line(
        f"lowering-table ops no OpInfo is named after ({len(untested)}; many still run inside "
        f"nn.functional OpInfos): {', '.join(untested)}"
    )
    owners = collections.Counter()
    for reason, n in reasons.items():
        owners[reason.split("]", 1)[0] + "]"] += n
    tw.line("xfails by owner: " + ", ".join(f"{k} {v}" for k, v in owners.most_common()))
    tw.line("xfails by reason:")
    for reason, n in reasons.most_common():
        tw.line(f"  {n:6d}  {reason}")
