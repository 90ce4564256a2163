"""``kubectl exec``, ``attach``, ``cp`` and ``port-forward`` into pods that are Slurm jobs.

How the streams reach us (kube-apiserver v1.36, checked against its source and this stack):

* kubectl always speaks WebSocket to the API server (``v5.channel.k8s.io`` for exec/attach,
  ``SPDY/3.1+portforward.k8s.io`` tunnelling for port-forward).
* The API server forwards them to the kubelet as WebSockets only if the feature gate
  ``ExtendWebSocketsToKubelet`` is on (beta, on by default since 1.36; ``NodeDeclaredFeatures``
  likewise) AND the node lists it in ``status.declaredFeatures``
  (``pkg/registry/core/pod/rest/subresources.go``: ``checkNodeSupportsWebsockets``). Otherwise
  it translates at the API server and upgrades to the kubelet with ``Upgrade: SPDY/3.1`` (POST,
  ``X-Stream-Protocol-Version: v5|v4.channel.k8s.io`` or ``portforward.k8s.io``). The metric
  ``apiserver_websocket_streaming_requests_total{proxy_type=...}`` shows which path was taken.
  Mobius serves both, so declaring the feature is a choice, not a requirement.

Modules:

* :mod:`.spdy` SPDY/3.1 frames and header compression, by hand: no maintained Python SPDY
  library exists. :mod:`.session` multiplexes streams over a trio stream.
* :mod:`.websocket` WebSocket channels with ``wsproto``; :mod:`.remotecommand` the exec/attach
  protocol over either; :mod:`.portforward` stream pairs spliced to TCP.
* :mod:`.backend` the command: ``srun --overlap --jobid`` into the pod's job, then
  ``podman exec`` (pipes, or ``srun --pty`` under a local pty for ``-t``); :mod:`.attach`
  follows a container's CRI log.
* :mod:`.listener` serves the one TLS port: hypercorn/ASGI cannot take over a connection for a
  non-WebSocket upgrade, so we read the first request head with ``h11`` and either handle the
  upgrade or hand the connection (bytes replayed) to hypercorn. :mod:`.wiring` builds the route
  the kubelet server's accept loop uses.
"""
