"""The operator's own Prometheus metrics (served on MODELPLANE_METRICS_PORT): what it reconciles, what it writes,
and how its Models stand, so that a platform team can alert on it."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

RECONCILES = Counter("modelplane_reconciles_total", "Reconciles run, by owner kind and result.", ["kind", "result"])
RECONCILE_SECONDS = Histogram("modelplane_reconcile_duration_seconds", "Time spent in one reconcile.", ["kind"],
                              buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
APPLIES = Counter("modelplane_applies_total", "Children written with server-side apply, by kind and reason.",
                  ["kind", "reason"])
STATUS_WRITES = Counter("modelplane_status_writes_total", "Status subresource writes, by owner kind.", ["kind"])
PHASES = Gauge("modelplane_models", "Models by phase, as last written by this operator.", ["phase"])

_phase_of: dict[str, str] = {}


def model_phase(uid: str, phase: str | None) -> None:
    """Track one Model's phase (None when it is gone) so that the gauge counts Models, not transitions."""
    old = _phase_of.pop(uid, None)
    if old:
        PHASES.labels(old).dec()
    if phase:
        _phase_of[uid] = phase
        PHASES.labels(phase).inc()


def serve(port: int, addr: str = "0.0.0.0") -> None:
    start_http_server(port, addr=addr)
