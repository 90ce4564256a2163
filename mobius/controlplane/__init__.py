"""A private Kubernetes control plane: etcd, kube-apiserver and kube-controller-manager.

`serve_control_plane` runs the genuine upstream servers (built by ``make setup``) as child
processes on loopback ports, with a throwaway CA from `pki`, and reports a `ControlPlane` (URL and
admin kubeconfig) once the API server is ready and the ``default`` ServiceAccount exists.
"""

from mobius.controlplane.launcher import (
    ControlPlane,
    ControlPlaneSettings,
    free_port,
    serve_control_plane,
)
from mobius.controlplane.pki import (
    CertAndKey,
    Pki,
    client_ssl_context,
    issue_cert,
    issue_kubelet_serving_cert,
    new_ca,
    new_service_account_key,
    write_kubeconfig,
    write_pki,
)

__all__ = [
    "CertAndKey",
    "ControlPlane",
    "ControlPlaneSettings",
    "Pki",
    "client_ssl_context",
    "free_port",
    "issue_cert",
    "issue_kubelet_serving_cert",
    "new_ca",
    "new_service_account_key",
    "serve_control_plane",
    "write_kubeconfig",
    "write_pki",
]
