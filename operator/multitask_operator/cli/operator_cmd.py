"""`mtm operator`: run the MultiTaskModel controller (kopf) with metrics and a liveness probe.

    mtm operator                                  # the whole cluster, one replica
    mtm operator --namespace ml --namespace nlp   # only these namespaces
    mtm operator --peering mtm --liveness http://0.0.0.0:8080/healthz --metrics-port 9090

With more than one replica pass `--peering NAME`: kopf elects one active replica through that
KopfPeering (ClusterKopfPeering cluster-wide) object, which the Helm chart creates; without it
the operator runs `--standalone`. Images and workspace defaults come from MTM_* variables
(see multitask_operator.config). Logs are JSON lines, one per event, on stderr.
"""

from __future__ import annotations

import click


@click.command("operator")
@click.option("--namespace", "namespaces", multiple=True,
              help="Watch only this namespace (repeatable); default: the whole cluster.")
@click.option("--peering", default=None,
              help="Peering object for leader election among replicas; default: standalone.")
@click.option("--standalone", is_flag=True,
              help="No leader election (one replica); the default without --peering.")
@click.option("--liveness", default="http://0.0.0.0:8080/healthz", show_default=True,
              help="Liveness endpoint URL kopf serves; empty to disable.")
@click.option("--metrics-port", default=9090, show_default=True, type=int,
              help="Port of the Prometheus /metrics endpoint; 0 to disable.")
@click.option("--verbose", is_flag=True, help="Debug logging.")
def operator(namespaces: tuple[str, ...], peering: str | None, standalone: bool, liveness: str,
             metrics_port: int, verbose: bool) -> None:
    """Run the operator until it is stopped (SIGTERM, SIGINT)."""
    import asyncio
    import logging
    import random

    if standalone and peering:
        raise click.UsageError("--standalone and --peering exclude each other")

    import kopf
    from prometheus_client import start_http_server

    import multitask_operator.handlers  # noqa: F401  (registers the handlers)
    from multitask_operator.config import OperatorConfig

    config = OperatorConfig.from_env()
    watched = list(namespaces) or config.watch_namespaces
    kopf.configure(verbose=verbose, log_format=kopf.LogFormat.JSON)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    if metrics_port:
        start_http_server(metrics_port)
    asyncio.run(kopf.operator(
        clusterwide=not watched,
        namespaces=watched,
        standalone=peering is None,
        peering_name=peering,
        # kopf pauses every replica whose priority is not the highest; replicas of one
        # Deployment cannot be given different priorities, so each draws its own.
        priority=random.randint(1, 2**31 - 1) if peering else 0,
        liveness_endpoint=liveness or None,
        memo=kopf.Memo(config=config),
    ))
