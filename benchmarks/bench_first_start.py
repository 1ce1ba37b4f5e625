"""Is the runtime's own first-start choice of format the fastest one? For each bundle, from
an empty config folder: the format a run would pick at batch 1 and 32 (the 0.2 s timing of
``selection.first_start_selection``, in its child process), then a longer reference timing
(``select_formats``, 2 s per format and batch size, 8 interleaved rounds) and the ratio of
the picked format's time to the reference's fastest (1.05 or less: within the 5 % tie).

    python benchmarks/bench_first_start.py [BUNDLE ...] [--repeat N] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile

from edgecnn.deploy import hosts
from edgecnn.deploy.bundle import Bundle
from edgecnn.deploy.selection import SELECT_ENV, select_formats

BATCHES = (1, 32)


def check(name: str) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="edgecnn-config-") as config:
        os.environ["XDG_CONFIG_HOME"] = config     # no host file: the first start measures
        bundle = Bundle.open(name)
        picked = {b: hosts.selected_format(bundle, b)[0] for b in BATCHES}
        reference = select_formats(bundle, batches=BATCHES, seconds=2.0, rounds=8,
                                   write=False)
    rows = []
    for b in BATCHES:
        ms = reference["batches"][str(b)]["ms_per_batch"]
        rows.append({"bundle": name, "batch": b, "first_start": picked[b],
                     "reference_fastest": min(ms, key=ms.get),
                     "ratio": round(ms[picked[b]] / min(ms.values()), 3), "ms": ms,
                     "load_average": reference["load_average"]})
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundles", nargs="*", default=["neu", "cwru", "mnist"])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    os.environ.pop(SELECT_ENV, None)
    rows = []
    for _ in range(max(args.repeat, 1)):
        for name in args.bundles:
            for row in check(name):
                rows.append(row)
                print(f"{row['bundle']:<8} batch {row['batch']:>2}: first start "
                      f"{row['first_start']:<12} reference fastest "
                      f"{row['reference_fastest']:<12} ratio {row['ratio']:.3f}  "
                      f"(load {row['load_average'][0]})", flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=2)
    return 0 if all(r["ratio"] <= 1 + hosts.TIE_SHARE for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
