"""The `specpair` command: a thin layer over the Python API (specpair.load, specpair.check).

parser.py     the argument parser (each command adds its own subparser)
common.py     shared options; arguments to the API's keywords in one place; output helpers
generate.py check.py bench.py advise.py serve.py steer.py deploy.py models.py overhead.py
              one module per subcommand

Every user error is a SpecpairError, printed on one line with its exit code (2 bad input,
3 a pair that cannot be used), its option names written as this command's flags.
"""

from __future__ import annotations

import sys

from ..errors import EXIT_INTERRUPTED, SpecpairError


def main(argv: list[str] | None = None) -> int:
    from .common import flag
    from .parser import build_parser

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except SpecpairError as e:
        print(f"specpair: error: {e.render(flag)}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("specpair: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
