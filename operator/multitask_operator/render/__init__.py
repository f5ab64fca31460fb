"""Manifest rendering: pure functions from a MultiTaskModel's spec to plain-dict manifests.

No kopf or kubernetes imports here: the reconcile core decides what to apply, these modules
only say what the objects look like, and the tests validate them against the Kubernetes schema.
"""

from .gateway import (
    render_gateway_configmap,
    render_gateway_deployment,
    render_gateway_pdb,
    render_gateway_service,
)
from .scaling import render_gateway_hpa, render_inference_hpa, render_inference_pdb
from .serving import render_inference_deployment, render_inference_service
from .tasks import RoutedTask

__all__ = [
    "RoutedTask",
    "render_gateway_configmap",
    "render_gateway_deployment",
    "render_gateway_hpa",
    "render_gateway_pdb",
    "render_gateway_service",
    "render_inference_deployment",
    "render_inference_hpa",
    "render_inference_pdb",
    "render_inference_service",
]
