"""The code-sandbox manifests in deploy/k8s/sandbox: gVisor, no network, non-root, read-only, bounded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from keel.sandbox.__main__ import parser

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
SANDBOX = DEPLOY / "k8s" / "sandbox"


def documents() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(SANDBOX.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d is not None)
    return docs


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in documents() if d["kind"] == kind]


def one(kind: str) -> dict[str, Any]:
    [found] = of_kind(kind)
    return found


def pod() -> dict[str, Any]:
    spec: dict[str, Any] = one("Deployment")["spec"]["template"]["spec"]
    return spec


def container() -> dict[str, Any]:
    [found] = pod()["containers"]
    return found  # type: ignore[no-any-return]


def test_every_sandbox_manifest_parses_and_the_kustomization_lists_them_all() -> None:
    kustomization = yaml.safe_load((SANDBOX / "kustomization.yaml").read_text())
    on_disk = {p.name for p in SANDBOX.iterdir() if p.is_file() and p.name != "kustomization.yaml"}
    assert set(kustomization["resources"]) == on_disk and not list(SANDBOX.glob("*.yml"))
    namespace = kustomization["namespace"]
    assert one("Namespace")["metadata"]["name"] == namespace
    for doc in documents():
        assert doc["apiVersion"] and doc["metadata"]["name"]
        if doc["kind"] not in ("Namespace", "RuntimeClass"):  # those two are cluster-scoped
            assert doc["metadata"]["namespace"] == namespace, f"{doc['kind']} {doc['metadata']['name']}"
    assert one("Namespace")["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_sandbox_pods_run_on_the_gvisor_runtime_class() -> None:
    runtime_class = one("RuntimeClass")
    assert runtime_class["handler"] == "runsc"
    assert pod()["runtimeClassName"] == runtime_class["metadata"]["name"]


def test_a_deny_all_policy_covers_every_pod_in_both_directions() -> None:
    policies = {p["metadata"]["name"]: p["spec"] for p in of_kind("NetworkPolicy")}
    deny = policies["deny-all"]
    assert deny["podSelector"] == {}
    assert set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny
    for name, spec in policies.items():  # no other policy opens any egress
        if name != "deny-all":
            assert "egress" not in spec and "Egress" not in spec["policyTypes"], name


def test_only_keel_workers_may_call_the_sandbox_port() -> None:
    allow = next(p["spec"] for p in of_kind("NetworkPolicy") if p["metadata"]["name"] != "deny-all")
    assert allow["policyTypes"] == ["Ingress"]
    [rule] = allow["ingress"]
    [peer] = rule["from"]
    workers = yaml.safe_load((DEPLOY / "k8s" / "statefulset.yaml").read_text())
    worker_labels = workers["spec"]["template"]["metadata"]["labels"]
    assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": workers["metadata"]["namespace"]}
    assert peer["podSelector"]["matchLabels"].items() <= worker_labels.items()
    [port] = rule["ports"]
    [container_port] = container()["ports"]
    assert port["port"] == container_port["containerPort"]
    service_port = one("Service")["spec"]["ports"][0]
    assert service_port["targetPort"] == container_port["name"]


def test_the_sandbox_runs_non_root_read_only_without_capabilities_or_service_account() -> None:
    spec = pod()
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0
    assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert spec["automountServiceAccountToken"] is False
    assert not any(spec.get(k) for k in ("hostNetwork", "hostPID", "hostIPC"))
    context = container()["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False and context.get("privileged", False) is False
    assert context["capabilities"]["drop"] == ["ALL"] and "add" not in context["capabilities"]


def test_the_sandbox_has_cpu_memory_and_disk_limits_and_a_bounded_workspace_volume() -> None:
    resources = container()["resources"]
    assert {"cpu", "memory", "ephemeral-storage"} <= resources["limits"].keys()
    volumes = {v["name"]: v for v in pod()["volumes"]}
    [mount] = container()["volumeMounts"]
    assert volumes[mount["name"]]["emptyDir"]["sizeLimit"]
    args = parser().parse_args(container()["args"])
    assert args.workspace_dir == mount["mountPath"]


def test_the_container_command_is_a_valid_sandbox_server_invocation() -> None:
    assert container()["command"] == ["python", "-m", "keel.sandbox"]
    args = parser().parse_args(container()["args"])
    assert args.command == "serve" and args.host == "0.0.0.0"
    assert args.port == container()["ports"][0]["containerPort"]
    assert container()["readinessProbe"]["httpGet"]["path"] == "/v1/health"
    assert {"secretRef": {"name": one("Secret")["metadata"]["name"]}} in container()["envFrom"]
    assert "KEEL_SANDBOX_TOKEN" in one("Secret")["stringData"]


def test_the_readme_documents_the_sandbox_and_the_node_pid_limit() -> None:
    readme = (DEPLOY / "README.md").read_text()
    assert "k8s/sandbox" in readme and "podPidsLimit" in readme and "KEEL_SANDBOX_URL" in readme
