"""`python -m modelplane_operator`: run the operator against the current kubeconfig or in-cluster credentials."""

from __future__ import annotations

import argparse
import logging
import os
import random

import kopf

from .config import Config, ConfigError

WHERE = """where things are (operator/modelplane_operator/):
  render.py      a Model's Deployment, Service and NetworkPolicy, decided from its spec (pure)
  agent.py       an Agent's Deployment and ConfigMap, and which Models a workload may use (pure)
  inject.py      what the webhook adds to an opted-in pod (pure)
  status.py      a Model's status from its Deployment and pods (pure)
  sync.py        writing children: plan_child decides, server-side apply writes; status write throttling
  handlers.py    kopf's events wired to the above: read (indexes), plan, apply, report
  config.py      these settings, typed: MODELPLANE_<FIELD> env vars (see the Config class)
"""


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="modelplane-operator", epilog=WHERE,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--namespace", "-n", action="append", default=[],
                    help="watch only this namespace (repeatable); default: all namespaces")
    ap.add_argument("--peering", default=os.environ.get("MODELPLANE_PEERING", ""),
                    help="kopf peering name, so that only one of several replicas acts; default: standalone")
    ap.add_argument("--priority", type=int, default=int(os.environ.get("MODELPLANE_PEERING_PRIORITY", "0")) or
                    random.randint(1, 1_000_000),
                    help="peering priority; the highest live replica acts (default: random, so that replicas differ)")
    ap.add_argument("--liveness", default=os.environ.get("MODELPLANE_LIVENESS", ""),
                    help="serve a liveness endpoint, e.g. http://0.0.0.0:8080/healthz")
    ap.add_argument("--webhook-port", help="serve the injection webhook on this port (MODELPLANE_WEBHOOK_PORT)")
    ap.add_argument("--webhook-host", help="name or IP the API server calls the webhook at (MODELPLANE_WEBHOOK_HOST)")
    ap.add_argument("--webhook-configure", action="store_true",
                    help="write the MutatingWebhookConfiguration pointing at this process (local runs)")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    # Flags are one more way to give the MODELPLANE_* settings: they win over the environment.
    env = dict(os.environ)
    for var, value in (("WEBHOOK_PORT", args.webhook_port), ("WEBHOOK_HOST", args.webhook_host),
                       ("WEBHOOK_CONFIGURE", "true" if args.webhook_configure else None),
                       ("WATCH_NAMESPACES", ",".join(args.namespace))):
        if value:
            env[f"MODELPLANE_{var}"] = value
    try:
        config = Config.from_env(env)
    except ConfigError as e:
        ap.error(str(e))  # exits 2, naming the setting

    from . import handlers  # registers the handlers
    from .peering import own_identity

    identity = own_identity()  # kopf's and the child events' view of which replica acts must name the same one
    handlers.install(config, (args.peering, identity, args.priority) if args.peering else None)
    kopf.configure(verbose=args.verbose)
    if not args.verbose:
        # kopf says "Handler ... succeeded" for every handler of every event: a line per event, and a tenth of the
        # operator's CPU in a burst. Its warnings and errors stay, and so do the operator's own messages.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    kopf.run(
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        standalone=not args.peering,
        peering_name=args.peering or None,
        priority=args.priority,
        identity=identity,
        liveness_endpoint=args.liveness or None,
    )


if __name__ == "__main__":
    main()
