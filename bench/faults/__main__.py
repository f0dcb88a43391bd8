"""python -m bench.faults [--only SUBSTRING] [--jobs 2] [--keep DIR] [--table docs/reliability.md]"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

from bench import faults
from bench.faults.cases import all_cases
from bench.faults.harness import check_table_page, run_all, summary, write_table
from bench.faults.suite import Suite


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m bench.faults", description=faults.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", help="run the cases whose label contains this text")
    parser.add_argument("--jobs", type=int, default=2, help="cases run at once (default 2)")
    parser.add_argument("--keep", type=Path, help="build everything in this folder and keep it")
    parser.add_argument(
        "--table",
        type=Path,
        help="write the markdown table here: into docs/reliability.md between its markers, or a new file",
    )
    args = parser.parse_args(argv)
    if args.table:
        check_table_page(args.table)
    start = time.perf_counter()
    cases = [case for case in all_cases() if not args.only or args.only in case.label]
    with tempfile.TemporaryDirectory(prefix="sr-faults-") as scratch:
        root = args.keep or Path(scratch)
        root.mkdir(parents=True, exist_ok=True)
        results = run_all(cases, Suite(root), jobs=args.jobs)
    if args.table:
        write_table(results, args.table)
    print(f"wall time {time.perf_counter() - start:.0f} s", file=sys.stderr)
    line = summary(results)
    print(line)
    return 0 if all(r.verdict == "handled" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
