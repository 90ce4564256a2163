"""The kubelet HTTPS API: what the API server calls for kubectl logs (and later exec, stats)."""
