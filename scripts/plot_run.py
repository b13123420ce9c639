"""Draw the curves of a run: loss, learning rate, throughput and evaluation, into one PNG.

    python scripts/plot_run.py WORKDIR [--out FILE]

Reads ``WORKDIR/metrics.jsonl`` (written by ``python -m jaxssl.main --workdir=WORKDIR``) and
writes ``FILE`` (default ``WORKDIR/curves.png``); see :func:`jaxssl.plots.plot_run`. Works
while the run is still going (plots what has been logged so far). Needs matplotlib
(``pip install -e '.[plots]'``).
"""
from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workdir", help="the run directory (holds metrics.jsonl)")
    parser.add_argument("--out", default=None, help="PNG to write (default WORKDIR/curves.png)")
    args = parser.parse_args(argv)
    from jaxssl import optional, plots

    try:
        optional.require("matplotlib", "scripts/plot_run.py (drawing the curves)")
        out = plots.plot_run(args.workdir, args.out)
    except (FileNotFoundError, ValueError, optional.MissingDependencyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
