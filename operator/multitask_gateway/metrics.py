"""Prometheus metrics of the gateway, per task, on `/metrics`.

A registry per app (not the global default one) so that several gateways can live in one
process, as they do in tests and in the benchmark. Label values are bounded: the task label is
a configured task name or "none", never a name a client made up.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

NO_TASK = "none"
# From a 1 ms classification up to a long generation; the gateway's timeout is 120 s by default.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
                   60, 120)


class Call:
    """What one request's handler tells the metrics: its task, once known."""

    __slots__ = ("task",)

    def __init__(self) -> None:
        self.task = NO_TASK


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            "mtm_gateway_requests", "Requests answered, by task, endpoint and HTTP status.",
            ["task", "endpoint", "code"], registry=self.registry,
        )
        self.latency = Histogram(
            "mtm_gateway_request_duration_seconds",
            "Time from request to the last byte of the answer, by task and endpoint.",
            ["task", "endpoint"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.errors = Counter(
            "mtm_gateway_errors", "Requests that failed, by task and error_type.",
            ["task", "error_type"], registry=self.registry,
        )
        self.in_flight = Gauge(
            "mtm_gateway_in_flight_requests", "Requests being answered now, by task.",
            ["task"], registry=self.registry,
        )

        # The labelled children, looked up once: `labels()` takes a lock and builds a key on
        # every call, a visible share of the gateway's per-request cost. Bounded like the labels.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.rollout = RolloutMetrics(self.registry)

    def observe(self, task: str, endpoint: str, code: int, seconds: float) -> None:
        key = (task, endpoint, code)
        children = self._children.get(key)
        if children is None:
            children = (self.requests.labels(task, endpoint, str(code)),
                        self.latency.labels(task, endpoint))
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def error(self, task: str, error_type: str) -> None:
        self.errors.labels(task, error_type).inc()


class RolloutMetrics:
    """The live comparison of a handover (split.py), per task and rollout step. `step` values
    come from the operator's config (one per phase of a rollout), so the labels stay bounded.

        mtm_gateway_rollout_answers_total{task, step, side, role, outcome}
            side: unified | legacy; role: client (its answer was returned) | mirror (compared
            only); outcome: ok | error (5xx, or no answer at all)
        mtm_gateway_rollout_compared_total{task, step}, ..._agreed_total{task, step}
        mtm_gateway_rollout_duration_seconds{task, side}
        mtm_gateway_config_info{hash}: 1 for the config this process serves now
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.answers = Counter(
            "mtm_gateway_rollout_answers", "Answers during a handover, by task, step, side "
            "(unified or legacy), role (client or mirror) and outcome (ok or error).",
            ["task", "step", "side", "role", "outcome"], registry=registry,
        )
        self.compared_requests = Counter(
            "mtm_gateway_rollout_compared", "Requests answered by both sides and compared.",
            ["task", "step"], registry=registry,
        )
        self.agreed_requests = Counter(
            "mtm_gateway_rollout_agreed", "Compared requests on which both sides agreed.",
            ["task", "step"], registry=registry,
        )
        self.duration = Histogram(
            "mtm_gateway_rollout_duration_seconds", "Time to each side's answer during a "
            "handover, by task and side.", ["task", "side"], buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.config_info = Gauge(
            "mtm_gateway_config_info", "1 for the hash of the config being served.", ["hash"],
            registry=registry,
        )
        self._hash: str | None = None

    def answered(self, task: str, step: str, side: str, role: str, status: int,
                 seconds: float) -> None:
        outcome = "error" if status >= 500 else "ok"
        self.answers.labels(task, step, side, role, outcome).inc()
        self.duration.labels(task, side).observe(seconds)

    def compared(self, task: str, step: str, agreed: bool) -> None:
        self.compared_requests.labels(task, step).inc()
        if agreed:
            self.agreed_requests.labels(task, step).inc()

    def serving(self, config_hash: str) -> None:
        if self._hash is not None:
            self.config_info.remove(self._hash)
        self._hash = config_hash
        self.config_info.labels(config_hash).set(1)
