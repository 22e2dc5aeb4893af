"""`python -m modelplane_operator`: run the operator against the current kubeconfig or in-cluster credentials."""

from __future__ import annotations

import argparse
import os

import kopf


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="modelplane-operator")
    ap.add_argument("--namespace", "-n", action="append", default=[],
                    help="watch only this namespace (repeatable); default: all namespaces")
    ap.add_argument("--peering", default=os.environ.get("MODELPLANE_PEERING", ""),
                    help="kopf peering name, so that only one of several replicas acts; default: standalone")
    ap.add_argument("--liveness", default=os.environ.get("MODELPLANE_LIVENESS", ""),
                    help="serve a liveness endpoint, e.g. http://0.0.0.0:8080/healthz")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    from . import handlers  # noqa: F401  registers the handlers

    kopf.configure(verbose=args.verbose)
    kopf.run(
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        standalone=not args.peering,
        peering_name=args.peering or None,
        liveness_endpoint=args.liveness or None,
    )


if __name__ == "__main__":
    main()
