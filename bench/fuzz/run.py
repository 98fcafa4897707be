"""Coverage-guided fuzzing (atheris / libFuzzer) of one target from `bench/fuzz/targets.py`.

    uv run python bench/fuzz/run.py frames|jetstream|validator [--runs 1000000] [--corpus DIR]

The corpus directory is seeded from the reference corpus and synthetic events, then grown by libFuzzer. An
input fails when it breaks the target's contract (`PropertyViolation`), raises anything else, runs over 1 s
(`-timeout=1`) or takes the process over 2 GiB (`-rss_limit_mb=2048`); libFuzzer then writes it next to the
corpus as `crash-*`/`timeout-*`/`oom-*` and exits non-zero. Every 100,000 inputs a JSON line goes to stdout: inputs
run by outcome (accepted / rejected / skipped / undecodable / empty), seconds, inputs per second.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import sys
import time
from pathlib import Path

import atheris

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.fuzz.targets import TARGETS, seeds  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", choices=sorted(TARGETS))
    p.add_argument("--runs", type=int, default=1_000_000)
    p.add_argument("--corpus", type=Path, help="default: bench/.cache/fuzz/<target>")
    p.add_argument("--max-len", type=int, default=65536)
    p.add_argument("--seed", type=int, default=0, help="libFuzzer -seed (0: random)")
    args, rest = p.parse_known_args()
    corpus: Path = args.corpus or ROOT / "bench" / ".cache" / "fuzz" / args.target
    corpus.mkdir(parents=True, exist_ok=True)
    for s in seeds(args.target):
        (corpus / f"seed-{hashlib.sha1(s).hexdigest()}").write_bytes(s)
    check = TARGETS[args.target]
    outcomes: collections.Counter[str] = collections.Counter()
    started = time.monotonic()

    def one(data: bytes) -> None:
        outcomes[check(data)] += 1
        # libFuzzer ends the process with exit(), past Python's atexit: report as we go, the last line wins.
        if outcomes.total() % 100_000 == 0:
            summary()

    def summary() -> None:
        seconds = time.monotonic() - started
        total = sum(outcomes.values())
        out = {
            "target": args.target,
            "engine": "atheris/libFuzzer",
            "inputs": total,
            "outcomes": dict(outcomes),
            "seconds": round(seconds, 1),
            "inputs_per_second": round(total / seconds) if seconds else None,
        }
        print(json.dumps(out), flush=True)

    libfuzzer = [
        sys.argv[0],
        f"-runs={args.runs}",
        "-timeout=1",
        "-rss_limit_mb=2048",
        f"-max_len={args.max_len}",
        f"-seed={args.seed}",
        f"-artifact_prefix={corpus.parent}/{args.target}-",
        "-print_final_stats=1",
        *rest,
        str(corpus),
    ]
    # Seeds are built first (they import the synthetic workload), then every loaded function is instrumented.
    atheris.instrument_all()
    atheris.Setup(libfuzzer, one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
