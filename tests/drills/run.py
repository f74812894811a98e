"""``make drills``: every drill at full size, one process each; rewrites docs/reliability.md.

``--bounded`` runs CI's minimum sizes instead; ``--only a,b`` a subset (the document then shows
the others' latest verdicts, kept in var/drills/verdicts/). Exit status 1 when a drill that
ran failed: a failing drill is reported as failing, never left out.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from tests.benchmarks.run import _machine
from tests.drills.base import DRILLS, Verdict

ROOT = Path(__file__).resolve().parents[2]
VERDICTS = ROOT / "var" / "drills" / "verdicts"


def drill_run(name: str, *, bounded: bool, timeout: float) -> Verdict:
    """Run one drill in its own process and read its verdict."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "verdict.json"
        command = [sys.executable, "-m", "tests.drills.drill", name, "--verdict", str(path)]
        if bounded:
            command.append("--bounded")
        try:
            subprocess.run(command, cwd=ROOT, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return Verdict(
                drill=name,
                passed=False,
                line=f"FAIL {name}: did not finish within {timeout:.0f} s",
                bounded=bounded,
                seconds=timeout,
            )
        if not path.exists():
            return Verdict(
                drill=name, passed=False, line=f"FAIL {name}: no verdict written", bounded=bounded
            )
        return Verdict.from_file(path)


def _figure(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def render(verdicts: list[Verdict], *, machine: str, when: datetime, bounded: bool) -> str:
    titles = {drill.name: drill.title for drill in DRILLS}
    lines = [
        "# Reliability drills",
        "",
        "Written by `make drills` (do not edit by hand). Each drill started the real stack on",
        "services of its own (a redis-server on a free port, a PostgreSQL database of its own,",
        "the local Binance test server, the Firestore emulator, daphne, Celery workers and beat),",
        "broke it on purpose and judged the outcome. CI runs the same drills at minimum sizes.",
        "",
        f"- run: {when:%Y-%m-%d %H:%M} UTC ({'bounded, CI sizes' if bounded else 'full sizes'})",
        f"- machine: {machine}",
        "",
        "| drill | verdict | time |",
        "| --- | --- | --- |",
    ]
    for verdict in verdicts:
        lines.append(
            f"| {titles.get(verdict.drill, verdict.drill)} | {verdict.line} | "
            f"{verdict.seconds:.0f} s |"
        )
    lines += ["", "## Figures", ""]
    for verdict in verdicts:
        lines.append(f"### {titles.get(verdict.drill, verdict.drill)}")
        lines.append("")
        for key, value in verdict.figures.items():
            lines.append(f"- {key}: {_figure(value)}")
        lines.append("")
    return "\n".join(lines)


def _kept(verdict: Verdict) -> None:
    VERDICTS.mkdir(parents=True, exist_ok=True)
    size = "bounded" if verdict.bounded else "full"
    (VERDICTS / f"{verdict.drill}.{size}.json").write_text(verdict.to_json())


def _latest(*, bounded: bool) -> list[Verdict]:
    """Each drill's latest verdict at this size (a drill never run shows as not run)."""
    size = "bounded" if bounded else "full"
    verdicts = []
    for drill in DRILLS:
        path = VERDICTS / f"{drill.name}.{size}.json"
        if path.exists():
            verdicts.append(Verdict.from_file(path))
        else:
            line = f"FAIL {drill.name}: not run"
            verdicts.append(Verdict(drill=drill.name, passed=False, line=line, bounded=bounded))
    return verdicts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bounded", action="store_true")
    parser.add_argument("--only", default="", help="comma-separated drill names")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per drill")
    args = parser.parse_args(argv)
    chosen = [name for name in args.only.split(",") if name]
    drills = [drill for drill in DRILLS if not chosen or drill.name in chosen]
    verdicts = []
    for drill in drills:
        print(f"drill {drill.name} ...", flush=True)
        verdicts.append(drill_run(drill.name, bounded=args.bounded, timeout=args.timeout))
        _kept(verdicts[-1])
        print(verdicts[-1].line, flush=True)
    # The document shows every drill's latest verdict at this size: `--only` reruns a few.
    text = render(
        _latest(bounded=args.bounded),
        machine=_machine(),
        when=datetime.now(UTC),
        bounded=args.bounded,
    )
    (ROOT / "docs" / "reliability.md").write_text(text)
    return 0 if all(verdict.passed for verdict in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
