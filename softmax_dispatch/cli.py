"""The ``softmax-dispatch`` command: ``bench``, ``conformance`` and ``backends``."""

from __future__ import annotations

import argparse
import sys


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="softmax-dispatch", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    bench = sub.add_parser("bench", help="time every backend beside the installed peers")
    from .bench.runner import add_arguments  # light: NumPy and the registry only

    add_arguments(bench)

    conformance = sub.add_parser(
        "conformance", help="run the conformance suite against the installed package"
    )
    conformance.add_argument("--backend", action="append", help="only this backend (repeatable)")
    conformance.add_argument("pytest_args", nargs=argparse.REMAINDER, help="extra pytest arguments after --")

    bench_dask = sub.add_parser("bench-dask", help="the mean cross-entropy of 32 GiB of logits on a Dask cluster")
    from .bench.dask_scale import add_arguments as add_dask_arguments  # light: NumPy only

    add_dask_arguments(bench_dask)

    sub.add_parser("backends", help="list the backends, their device and whether they can run here")
    return parser


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "bench":
        from .bench.runner import main as bench_main

        return bench_main(args)
    if args.command == "bench-dask":
        from .bench.dask_scale import main as dask_main

        return dask_main(args)
    if args.command == "conformance":
        from .conformance.runner import main as conformance_main

        extra = [a for a in args.pytest_args if a != "--"]
        return conformance_main(args.backend, extra)
    if args.command == "backends":
        import softmax_dispatch as sd

        for b in sd.available_backends():
            state = "available" if b["available"] else f"unavailable: {b['reason']}"
            default = f" (default for {', '.join(b['default_for'])} arrays)" if b["default_for"] else ""
            print(f"{b['name']:12s} {b['device']:5s} {state}{default}")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
