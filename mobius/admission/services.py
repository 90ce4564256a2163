"""Make Services headless: pure AdmissionReview -> JSONPatch.

Pods run as Slurm jobs on hosts Mobius does not control, so there is no kube-proxy to make a
Service's virtual IP work. A headless Service (``clusterIP: None``) gives clients what works
instead: DNS names resolving to the pods' own IPs, load-balanced by DNS. ExternalName Services
are left alone. NodePort and LoadBalancer Services cannot be headless, so they become ClusterIP
(headless) and lose their node ports; the response carries a warning that says so.
"""

from __future__ import annotations

import base64
import json
from typing import Any

_encode = json.dumps


def headless_patch(service: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """The JSONPatch that makes ``service`` headless, and warnings for the user."""
    spec = service.get("spec") or {}
    kind = spec.get("type") or "ClusterIP"
    if kind == "ExternalName":
        return [], []
    patch: list[dict[str, Any]] = []
    warnings: list[str] = []
    if "spec" not in service:
        patch.append({"op": "add", "path": "/spec", "value": {}})
    if kind in ("NodePort", "LoadBalancer"):
        patch.append({"op": "replace", "path": "/spec/type", "value": "ClusterIP"})
        warnings.append(
            f"Mobius serves no {kind}s: this Service is headless ClusterIP, "
            "reach it by its DNS name"
        )
        for i, port in enumerate(spec.get("ports") or []):
            if "nodePort" in port:
                patch.append({"op": "remove", "path": f"/spec/ports/{i}/nodePort"})
        for field in (
            "externalTrafficPolicy",
            "allocateLoadBalancerNodePorts",
            "loadBalancerClass",
            "healthCheckNodePort",
        ):
            if field in spec:
                patch.append({"op": "remove", "path": f"/spec/{field}"})
    if spec.get("clusterIP") not in (None, "", "None") or any(
        ip != "None" for ip in spec.get("clusterIPs") or []
    ):
        warnings.append("Mobius gives Services no virtual IP: clusterIP was replaced by None")
    op = "replace" if "clusterIP" in spec else "add"
    patch.append({"op": op, "path": "/spec/clusterIP", "value": "None"})
    op = "replace" if "clusterIPs" in spec else "add"
    patch.append({"op": op, "path": "/spec/clusterIPs", "value": ["None"]})
    return patch, warnings


def review_response(review: dict[str, Any]) -> dict[str, Any]:
    """The AdmissionReview answer for a Service CREATE (anything else is allowed unchanged)."""
    request = review.get("request") or {}
    response: dict[str, Any] = {"uid": request.get("uid", ""), "allowed": True}
    obj = request.get("object") or {}
    if request.get("operation") == "CREATE" and obj.get("kind") == "Service":
        patch, warnings = headless_patch(obj)
        if patch:
            response["patchType"] = "JSONPatch"
            response["patch"] = base64.b64encode(_encode(patch).encode()).decode()
        if warnings:
            response["warnings"] = warnings
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}
