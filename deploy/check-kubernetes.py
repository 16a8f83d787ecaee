#!/usr/bin/python3
"""Checks the Kubernetes manifests offline, as a cluster would take them.

There is no cluster here: `kubernetes-validate --strict` checks every
resource against the Kubernetes API's schemas, and this checks the
properties the deployment depends on: readiness on /readyz, a preStop and
a grace period covering CHAT_SHUTDOWN_GRACE, one gateway at a time in a
disruption, an autoscaler on connections, the ingress routing as the
balancer of docker compose does. Run by scripts/test.
"""
import glob
import os
import re
import subprocess
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIR = os.path.join(ROOT, "deploy", "kubernetes")


def seconds(text):
    match = re.fullmatch(r"(\d+)s", text)
    if not match:
        sys.exit(f"CHAT_SHUTDOWN_GRACE is {text!r}; this check reads whole seconds (25s)")
    return int(match.group(1))


def main():
    files = sorted(glob.glob(os.path.join(DIR, "*.yaml")))
    validated = subprocess.run(["kubernetes-validate", "--strict", "--quiet", *files], capture_output=True, text=True)
    if validated.returncode != 0:
        print(validated.stdout, validated.stderr, file=sys.stderr)
        sys.exit("kubernetes-validate refused the manifests")

    resources = {}
    for path in files:
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if doc:
                    resources[(doc["kind"], doc["metadata"]["name"])] = doc

    failures, checked = [], []

    def check(condition, what):
        checked.append(what)
        if not condition:
            failures.append(what)

    config = resources[("ConfigMap", "chat")]["data"]
    grace = seconds(config["CHAT_SHUTDOWN_GRACE"])
    workloads = [(kind, name) for (kind, name) in resources if kind in ("Deployment", "StatefulSet")]
    for kind, name in workloads:
        spec = resources[(kind, name)]["spec"]["template"]["spec"]
        container = spec["containers"][0]
        check(container["readinessProbe"]["httpGet"]["path"] == "/readyz", f"{name} is ready on /readyz")
        check(container["livenessProbe"]["httpGet"]["path"] == "/healthz", f"{name} is alive on /healthz")
        refs = [next(iter(ref.values()))["name"] for ref in container.get("envFrom", [])]
        check("chat" in refs, f"{name} takes the shared settings and secrets")
        pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
        check(spec["terminationGracePeriodSeconds"] > pre_stop + grace,
              f"{name}: the grace period covers preStop ({pre_stop} s) and CHAT_SHUTDOWN_GRACE ({grace} s)")
        check(spec["securityContext"].get("runAsNonRoot") is True, f"{name} runs as a user, not root")

    gateway = resources[("Deployment", "chat-gateway")]
    gateway_pod = gateway["spec"]["template"]["spec"]["containers"][0]
    check(gateway_pod.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0) > 0,
          "gateway waits in preStop until the Service stops sending it connections")
    labels = gateway["spec"]["template"]["metadata"]["labels"]
    for kind in ("Service", "PodDisruptionBudget"):
        selector = resources[(kind, "chat-gateway")]["spec"]["selector"]
        selector = selector.get("matchLabels", selector)
        check(all(labels.get(k) == v for k, v in selector.items()), f"the gateway {kind} selects the gateway pods")
    check(resources[("PodDisruptionBudget", "chat-gateway")]["spec"].get("maxUnavailable") == 1,
          "a disruption takes one gateway at a time")
    hpa = resources[("HorizontalPodAutoscaler", "chat-gateway")]["spec"]
    check(hpa["scaleTargetRef"]["name"] == "chat-gateway", "the autoscaler scales the gateways")
    check(any(m["type"] == "Pods" and m["pods"]["metric"]["name"] == "chat_gateway_connections" for m in hpa["metrics"]),
          "the autoscaler follows open connections per pod")
    check(hpa["minReplicas"] >= 2, "at least two gateways, so one can drain")

    routes = {}
    for rule in resources[("Ingress", "chat")]["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            routes[path["path"]] = path["backend"]["service"]["name"]

    def routed(path):
        best = max((p for p in routes if path == p or path.startswith(p.rstrip("/") + "/") or p == "/"), key=len)
        return routes[best]

    # What the compose balancer routes, the ingress routes alike.
    with open(os.path.join(ROOT, "deploy", "nginx", "chat.conf.template")) as f:
        nginx = f.read()
    presence_prefixes = re.search(r"\^/api/v1/\(([^)]*)\)", nginx).group(1).split("|")
    for prefix in presence_prefixes:
        check(routed(f"/api/v1/{prefix}/x") == "chat-presence", f"/api/v1/{prefix} goes to presence")
    for path in ["/api/v1/media", "/media/abc"]:
        check(routed(path) == "chat-media", f"{path} goes to media")
    for path in ["/ws/bob/", "/", "/sw.js", "/app.js"]:
        check(routed(path) == "chat-gateway", f"{path} goes to the gateways")

    for what in checked:
        print(("FAIL " if what in failures else "ok   ") + what)
    if failures:
        sys.exit(f"{len(failures)} of {len(checked)} Kubernetes checks failed")
    print(f"{len(checked)} Kubernetes checks passed")


if __name__ == "__main__":
    main()
