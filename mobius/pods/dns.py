"""A pod's resolv.conf, decided as the kubelet decides it (``pkg/kubelet/network/dns``).

- ``Default``: the node's resolv.conf (here: the kubelet host's, which HPC sites keep the same on
  every node), then ``dnsConfig`` merged in;
- ``ClusterFirst`` (the default): the cluster DNS servers, the search path
  ``<ns>.svc.<domain> svc.<domain> <domain>`` before the node's, ``ndots:5``, then ``dnsConfig``.
  Without a cluster DNS it falls back to ``Default`` and says so (the kubelet's MissingClusterDNS
  event); a ``hostNetwork`` pod uses ``Default`` unless its policy is
  ``ClusterFirstWithHostNet``;
- ``None``: ``dnsConfig`` alone.

Pure: the node's resolv.conf comes in as text. None means "leave the runtime's own".
"""

from __future__ import annotations

import msgspec

from mobius.errors import InvalidPodSpec
from mobius.models import Pod

MAX_NAMESERVERS = 3
MAX_SEARCHES = 32
MAX_SEARCH_CHARS = 2048
POLICIES = ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None")


class ResolvConf(msgspec.Struct, frozen=True):
    nameservers: tuple[str, ...] = ()
    searches: tuple[str, ...] = ()
    options: tuple[str, ...] = ()

    def render(self) -> str:
        lines = [f"nameserver {n}" for n in self.nameservers]
        if self.searches:
            lines.append("search " + " ".join(self.searches))
        if self.options:
            lines.append("options " + " ".join(self.options))
        return "\n".join(lines) + "\n"


class DnsDecision(msgspec.Struct, frozen=True):
    """The file to give the pod (None: the runtime's default) and a warning, if any."""

    resolv_conf: str | None
    warning: str = ""


def parse_resolv_conf(text: str) -> ResolvConf:
    """nameserver, search/domain and options lines of a resolv.conf (the last search wins)."""
    nameservers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split(";", 1)[0].split()
        if not words:
            continue
        if words[0] == "nameserver" and len(words) > 1:
            nameservers.append(words[1])
        elif words[0] in ("search", "domain"):
            searches = words[1:]
        elif words[0] == "options":
            options += words[1:]
    return ResolvConf(tuple(nameservers), tuple(searches), tuple(options))


def _merge_options(base: tuple[str, ...], extra: list[tuple[str, str | None]]) -> tuple[str, ...]:
    """Options by name, later ones replacing earlier ones (``ndots:5`` then ``ndots:2``)."""
    merged: dict[str, str] = {}
    for opt in base:
        merged[opt.split(":", 1)[0]] = opt
    for name, value in extra:
        merged[name] = name if value is None else f"{name}:{value}"
    return tuple(merged.values())


def _searches(searches: list[str]) -> tuple[str, ...]:
    out: list[str] = []
    for s in searches:
        s = s.rstrip(".") if s != "." else s
        if s and s not in out:
            out.append(s)
    while len(out) > MAX_SEARCHES or len(" ".join(out)) > MAX_SEARCH_CHARS:
        out.pop()
    return tuple(out)


def _dns_config(pod: Pod) -> tuple[list[str], list[str], list[tuple[str, str | None]]]:
    raw = pod.spec.dns_config or {}
    field = "spec.dnsConfig"
    if not isinstance(raw, dict):
        raise InvalidPodSpec(field, "must be an object with nameservers, searches, options")
    nameservers = raw.get("nameservers") or []
    searches = raw.get("searches") or []
    options = raw.get("options") or []
    if not isinstance(nameservers, list) or not all(isinstance(n, str) for n in nameservers):
        raise InvalidPodSpec(f"{field}.nameservers", "must be a list of IP addresses")
    if not isinstance(searches, list) or not all(isinstance(s, str) for s in searches):
        raise InvalidPodSpec(f"{field}.searches", "must be a list of domain names")
    opts: list[tuple[str, str | None]] = []
    for i, opt in enumerate(options if isinstance(options, list) else [None]):
        if not isinstance(opt, dict) or not isinstance(opt.get("name"), str) or not opt["name"]:
            raise InvalidPodSpec(f"{field}.options[{i}]", "needs a name (and optionally a value)")
        value = opt.get("value")
        opts.append((opt["name"], None if value is None else str(value)))
    for word in (*nameservers, *searches):
        if not word or any(c.isspace() or c in "#;" for c in word):
            raise InvalidPodSpec(field, f"{word!r} is not a name server or domain")
    for name, value in opts:
        if any(c.isspace() or c in "#;:" for c in name) or any(
            c.isspace() or c in "#;" for c in value or ""
        ):
            raise InvalidPodSpec(f"{field}.options", f"{name!r} is not a resolver option")
    return nameservers, searches, opts


def pod_resolv_conf(
    pod: Pod,
    *,
    node_resolv_conf: str,
    cluster_dns: tuple[str, ...] = (),
    cluster_domain: str = "cluster.local",
) -> DnsDecision:
    """What the pod's /etc/resolv.conf should say; InvalidPodSpec for a bad policy or config."""
    policy = pod.spec.dns_policy or "ClusterFirst"
    if policy not in POLICIES:
        raise InvalidPodSpec("spec.dnsPolicy", f"{policy!r} is not one of {', '.join(POLICIES)}")
    nameservers, searches, options = _dns_config(pod)
    if policy == "None" and not nameservers:
        raise InvalidPodSpec(
            "spec.dnsConfig.nameservers", "dnsPolicy None needs at least one name server"
        )
    node = parse_resolv_conf(node_resolv_conf)
    warning = ""
    if policy == "ClusterFirst" and pod.spec.host_network:
        policy = "Default"
    if policy in ("ClusterFirst", "ClusterFirstWithHostNet"):
        if cluster_dns:
            ns = pod.metadata.namespace
            base = ResolvConf(
                nameservers=cluster_dns,
                searches=(
                    f"{ns}.svc.{cluster_domain}",
                    f"svc.{cluster_domain}",
                    cluster_domain,
                    *node.searches,
                ),
                options=("ndots:5",),
            )
        else:
            warning = (
                f"pod: {pod.metadata.namespace}/{pod.metadata.name} has dnsPolicy {policy} but "
                "no cluster DNS is configured (the kubelet's --cluster-dns): falling back to "
                "the node's resolv.conf"
            )
            policy = "Default"
    if policy == "Default":
        if not (nameservers or searches or options):
            return DnsDecision(None, warning)  # the runtime's own copy of the node's file
        base = node
    elif policy == "None":
        base = ResolvConf()
    merged = ResolvConf(
        nameservers=tuple(dict.fromkeys([*base.nameservers, *nameservers]))[:MAX_NAMESERVERS],
        searches=_searches([*base.searches, *searches]),
        options=_merge_options(base.options, options),
    )
    return DnsDecision(merged.render(), warning)
