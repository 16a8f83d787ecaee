#!/usr/bin/python3
"""Checks docker-compose.yml the way `docker compose up` would read it.

There is no Docker engine on the development machines, so this stands in for
`up`: `docker-compose config` must accept the file, and the resolved file
must have the properties the deployment depends on. Run by scripts/test.
"""
import os
import subprocess
import sys

import yaml  # Debian's docker-compose depends on python3-yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECRETS = {
    "CHAT_JWT_SECRET": "check-compose-jwt-secret-0123456789abcdef",
    "CHAT_MEDIA_SECRET": "check-compose-media-secret-0123456789abcdef",
    "POSTGRES_PASSWORD": "check-compose-pg",
    "GRAFANA_ADMIN_PASSWORD": "check-compose-grafana",
    "CHAT_VAPID_PRIVATE_KEY": "Zx1wYvKsH3Q6rE9mT2aB5cD8fG0hJ4kL7nP1qR3sU6w",
}


def config(env):
    return subprocess.run(
        ["docker-compose", "-f", os.path.join(ROOT, "docker-compose.yml"), "config"],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )


def main():
    failures = []
    checked = []

    def check(condition, what):
        checked.append(what)
        if not condition:
            failures.append(what)

    bare = {k: v for k, v in os.environ.items() if k not in SECRETS}
    refused = config(bare)
    check(refused.returncode != 0 and "in .env" in refused.stderr,
          "without the secrets of .env, config must refuse and say which")

    result = config({**bare, **SECRETS})
    if result.returncode != 0:
        print(result.stderr, file=sys.stderr)
        sys.exit("docker-compose config refused the file")
    services = yaml.safe_load(result.stdout)["services"]

    for name in ["redis", "postgres", "gateway", "media", "presence", "lb", "prometheus", "grafana"]:
        check(name in services, f"service {name} exists")
    redis = services["redis"]
    check("--appendonly" in redis["command"] and "yes" in redis["command"], "redis keeps an append-only file")
    check(any("/data" in str(v) for v in redis.get("volumes", [])), "redis data on a volume")
    check("healthcheck" in services["postgres"], "postgres has a health check")
    check(any("postgresql/data" in str(v) for v in services["postgres"].get("volumes", [])), "postgres data on a volume")

    gateway = services["gateway"]
    check("container_name" not in gateway, "gateway has no container_name (so it scales)")
    check(not gateway.get("ports"), "gateway publishes no fixed host port (so it scales)")
    check(gateway["environment"].get("CHAT_AUTH") == "jwt", "gateway runs in jwt mode")
    check(gateway["environment"].get("CHAT_JWT_SECRET") == SECRETS["CHAT_JWT_SECRET"], "the secret comes from .env")
    check(gateway["environment"].get("CHAT_MEDIA_URL") == "http://media:8080", "gateway checks media with the media service")
    check(gateway.get("depends_on", {}).get("redis", {}).get("condition") == "service_healthy", "gateway waits for a healthy redis")
    check(services["presence"]["environment"].get("CHAT_MEDIA_URL") == "http://media:8080", "presence checks the server API's files with the media service")
    for name in ["gateway", "presence"]:
        check(services[name]["environment"].get("CHAT_VAPID_PRIVATE_KEY") == SECRETS["CHAT_VAPID_PRIVATE_KEY"], f"{name} signs pushes with the VAPID key from .env")

    for name in ["gateway", "media", "presence"]:
        check("healthcheck" in services[name], f"{name} has a health check")
        check(services[name]["environment"].get("REDIS_URL") == "redis://redis:6379/", f"{name} uses the compose redis")
    check(any("/data" in str(v) for v in services["media"].get("volumes", [])), "media files on a volume")
    check(services["media"]["environment"].get("DATABASE_URL", "").startswith("postgres://"), "media metadata in postgres")

    lb = services["lb"]
    check(len(lb.get("ports", [])) == 1, "the load balancer is the one published port")
    check(any("chat.conf.template" in str(v) for v in lb.get("volumes", [])), "the load balancer uses deploy/nginx")
    check("resolve" in lb["environment"].get("GATEWAY_SERVERS", ""), "the load balancer re-resolves the gateway replicas")
    for upstream in ["gateway", "media", "presence"]:
        check(lb.get("depends_on", {}).get(upstream, {}).get("condition") == "service_healthy",
              f"the load balancer waits for a healthy {upstream}")
    check(any("deploy/prometheus" in str(v) for v in services["prometheus"].get("volumes", [])), "prometheus configured from deploy/")
    check(any("provisioning" in str(v) for v in services["grafana"].get("volumes", [])), "grafana provisioned from deploy/")

    with open(os.path.join(ROOT, "deploy/prometheus/prometheus.yml")) as f:
        prometheus = yaml.safe_load(f)
    sd = {c["dns_sd_configs"][0]["names"][0] for c in prometheus["scrape_configs"] if "dns_sd_configs" in c}
    check(sd == {"gateway", "media", "presence"}, "prometheus discovers every replica of every service by DNS")
    with open(os.path.join(ROOT, "deploy/prometheus/alerts.yml")) as f:
        check(len(yaml.safe_load(f)["groups"][0]["rules"]) >= 5, "alerting rules are defined")

    tracked = subprocess.run(["git", "ls-files", ".env"], cwd=ROOT, capture_output=True, text=True).stdout
    check(tracked.strip() == "", ".env is not committed")

    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    print(f"compose: {len(checked) - len(failures)} passed, {len(failures)} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
