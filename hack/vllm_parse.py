"""Parse server argument lists with the pinned vLLM's own parser (run with the vLLM environment's Python).

Reads {"name": [args...], ...} as JSON on stdin; exits non-zero naming the first list vLLM rejects; prints the
parsed options of each as JSON on its last line.
"""

import json
import sys


def main() -> int:
    argvs = json.load(sys.stdin)
    from vllm.entrypoints.launchers import cli_args
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    out = {}
    for name, argv in argvs.items():
        parser = cli_args.make_arg_parser(FlexibleArgumentParser())
        try:
            ns = parser.parse_args(argv)
            if hasattr(cli_args, "validate_parsed_serve_args"):
                cli_args.validate_parsed_serve_args(ns)
        except (SystemExit, Exception) as e:  # argparse exits on a bad flag
            print(f"{name}: vLLM rejects {argv}: {e!r}", file=sys.stderr)
            return 1
        out[name] = {k: v for k, v in vars(ns).items() if isinstance(v, (str, int, float, bool, type(None)))}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
