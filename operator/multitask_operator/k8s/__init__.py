"""The cluster side: a thin async client, gathering what one MultiTaskModel owns, carrying out
the reconcile core's decisions, and the per-object loop that the kopf handlers start."""
