"""The container image and Kubernetes manifests in deploy/: facts that would break a deployment if they drifted."""

from __future__ import annotations

import importlib.util
import inspect
import json
import re
import uuid
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
import yaml
from dbos import DBOSClient
from dbos._schemas.system_database import SystemSchema
from dbos._sys_db import WorkflowStatusString

from keel import Agent, Runtime, ToolCall, tool
from keel.durable import QUEUE, DurableEngine
from keel.durable._engine import DEAD_AFTER_SECONDS
from keel.models import ScriptedModel

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
K8S = DEPLOY / "k8s"
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@tool(side_effects=True)
def refund(amount: int) -> str:
    """Refund an amount."""
    return f"refunded {amount}"


def documents() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d is not None)
    return docs


def one(kind: str) -> dict[str, Any]:
    found = [d for d in documents() if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind} in deploy/k8s, found {len(found)}"
    return found[0]


def config() -> dict[str, str]:
    data: dict[str, str] = one("ConfigMap")["data"]
    return data


def worker_container() -> dict[str, Any]:
    [container] = one("StatefulSet")["spec"]["template"]["spec"]["containers"]
    return container  # type: ignore[no-any-return]


def keda_query(name: str = "queue") -> str:
    triggers = {t["name"]: t for t in one("ScaledObject")["spec"]["triggers"]}
    assert set(triggers) == {"queue", "expired-approvals"}
    trigger = triggers[name]
    assert trigger["type"] == "postgresql"
    return " ".join(trigger["metadata"]["query"].split())


# -- the manifests -------------------------------------------------------------------------------
def test_every_manifest_parses_and_names_its_object() -> None:
    files = sorted(K8S.glob("*.yaml"))
    assert files and not list(K8S.glob("*.yml")), "manifests end in .yaml"
    for path in files:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        assert docs, f"{path.name} is empty"
        for doc in docs:
            assert doc.get("apiVersion") and doc.get("kind"), f"{path.name}: a document lacks apiVersion or kind"
            if doc["kind"] != "Kustomization":
                assert doc["metadata"]["name"], f"{path.name}: {doc['kind']} has no name"


def test_kustomization_lists_every_manifest_in_the_folder() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed))
    on_disk = {p.name for p in K8S.iterdir() if p.is_file() and p.name != "kustomization.yaml"}
    assert set(listed) == on_disk


def test_namespaced_objects_live_in_the_kustomization_namespace() -> None:
    namespace = yaml.safe_load((K8S / "kustomization.yaml").read_text())["namespace"]
    assert one("Namespace")["metadata"]["name"] == namespace
    for doc in documents():
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == namespace, f"{doc['kind']} {doc['metadata']['name']}"


def test_the_worker_id_is_the_stable_pod_name() -> None:
    env = {e["name"]: e for e in worker_container()["env"]}
    assert env["KEEL_WORKER_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_the_statefulset_has_its_headless_service_and_consistent_labels() -> None:
    statefulset, service = one("StatefulSet"), one("Service")
    spec = statefulset["spec"]
    assert spec["serviceName"] == service["metadata"]["name"]
    assert service["spec"]["clusterIP"] == "None"
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    assert "replicas" not in spec, "KEDA owns the replica count; a fixed one would be reset on every apply"


def test_workers_get_the_database_and_settings_from_the_secret_and_configmap() -> None:
    sources = worker_container()["envFrom"]
    secret, configmap = one("Secret"), one("ConfigMap")
    assert {"secretRef": {"name": secret["metadata"]["name"]}} in sources
    assert {"configMapRef": {"name": configmap["metadata"]["name"]}} in sources
    assert "KEEL_DATABASE_URL" in secret["stringData"]
    assert secret["stringData"]["KEEL_DATABASE_URL"].startswith("postgresql://")  # pgx (KEDA) and psycopg both read it
    assert {"KEEL_APPLICATION_VERSION", "KEEL_DATA_DIR"} <= config().keys()
    for variable in re.findall(r"\$\((\w+)\)", " ".join(worker_container()["args"])):
        assert variable in config(), f"args use $({variable}), which the ConfigMap does not define"


def test_the_container_runs_as_non_root_on_a_read_only_root_filesystem() -> None:
    pod = one("StatefulSet")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    context = worker_container()["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    assert context.get("runAsUser", pod["securityContext"]["runAsUser"]) != 0


def test_tmp_and_the_data_dir_are_writable_empty_dirs() -> None:
    volumes = {v["name"]: v for v in one("StatefulSet")["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in worker_container()["volumeMounts"]}
    for path in ("/tmp", config()["KEEL_DATA_DIR"]):
        assert path in mounts, f"{path} is not mounted: the root filesystem is read-only"
        assert "emptyDir" in volumes[mounts[path]]


def test_the_worker_has_resource_requests_and_limits() -> None:
    resources = worker_container()["resources"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= resources[kind].keys()


def test_the_probes_run_the_probe_script_the_image_ships() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    copied = re.search(r"^COPY deploy/probe\.py (\S+)$", dockerfile, re.M)
    workdir = re.findall(r"^WORKDIR (\S+)$", dockerfile, re.M)[-1]
    assert copied is not None and (DEPLOY / "probe.py").is_file()
    in_image = str(Path(workdir) / copied.group(1))
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert worker_container()[probe]["exec"]["command"] == ["python", in_image]


def test_the_probe_allows_a_heartbeat_as_old_as_the_sweeper_does() -> None:
    spec = importlib.util.spec_from_file_location("keel_deploy_probe", DEPLOY / "probe.py")
    assert spec is not None and spec.loader is not None
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    assert probe.DEFAULT_MAX_AGE == DEAD_AFTER_SECONDS


# -- scaling on the queue ------------------------------------------------------------------------
def test_the_scaled_object_scales_the_statefulset_down_to_zero() -> None:
    scaled = one("ScaledObject")["spec"]
    assert scaled["minReplicaCount"] == 0
    target = scaled["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("StatefulSet", one("StatefulSet")["metadata"]["name"])


def test_the_keda_query_names_keels_queue_and_dbos_real_table_and_columns() -> None:
    query = keda_query()
    assert QUEUE == "keel.runs"
    assert f"queue_name = '{QUEUE}'" in query
    table = re.search(r"\bFROM (\w+)\.(\w+)", query)
    assert table is not None
    schema, name = table.groups()
    # DBOS keeps its tables in the schema `dbos` unless told otherwise; keel does not tell it.
    assert schema == inspect.signature(DBOSClient.__init__).parameters["dbos_system_schema"].default == "dbos"
    assert name == SystemSchema.workflow_status.name
    columns = set(SystemSchema.workflow_status.c.keys())
    compared = re.findall(r"\b(\w+) (?:= |IN \()", query)
    assert compared == ["queue_name", "status", "application_version"]
    for column in compared:
        assert column in columns, f"dbos.workflow_status has no column {column!r}"
    statuses = re.search(r"status IN \(([^)]*)\)", query)
    assert statuses is not None
    assert {s.strip(" '") for s in statuses.group(1).split(",")} == {
        WorkflowStatusString.ENQUEUED.value,
        WorkflowStatusString.PENDING.value,
    }


def test_the_keda_query_counts_only_this_deployments_version() -> None:
    assert f"application_version = '{config()['KEEL_APPLICATION_VERSION']}'" in keda_query()
    assert f"r.app_version = '{config()['KEEL_APPLICATION_VERSION']}'" in keda_query("expired-approvals")


def test_the_expired_approvals_query_counts_overdue_approvals_on_real_postgresql() -> None:
    from keel.policies.approvals import RequireApproval

    name = f"keel_deploy_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    try:
        agent = Agent(
            "deploy_expiry",
            ScriptedModel([ToolCall("refund", {"amount": 5}), "done"]),
            tools=[refund],
            policies=[RequireApproval(["refund"], expires_in=3600)],
        )
        paused = agent.run_sync("refund 5", runtime=Runtime(url))
        assert paused.status == "waiting"
        query = keda_query("expired-approvals")
        version = f"r.app_version = '{config()['KEEL_APPLICATION_VERSION']}'"
        other = query.replace(version, "r.app_version = 'other'")
        with psycopg.connect(url, autocommit=True) as conn:  # as KEDA sends it: plain SQL
            before = conn.execute(query.encode()).fetchone()
            conn.execute("UPDATE keel_approvals SET expires_at = 1.0")  # its hour has passed
            after = conn.execute(query.encode()).fetchone()
            none = conn.execute(other.encode()).fetchone()
        assert before is not None and after is not None and none is not None
        assert (before[0], after[0], none[0]) == (0.0, 1.0, 0.0)
    finally:
        DurableEngine.close()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_keda_authenticates_with_the_workers_database_secret() -> None:
    auth, secret = one("TriggerAuthentication"), one("Secret")
    for trigger in one("ScaledObject")["spec"]["triggers"]:
        assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    [ref] = auth["spec"]["secretTargetRef"]
    assert ref == {"parameter": "connection", "name": secret["metadata"]["name"], "key": "KEEL_DATABASE_URL"}


def test_the_keda_query_counts_queued_segments_on_real_postgresql() -> None:
    name = f"keel_deploy_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    try:
        runtime = Runtime(url)
        agent = Agent("deploy_check", ScriptedModel(["done"]), policies=[])
        for _ in range(2):
            runtime.start(agent, "wait in the queue")  # no worker runs: each first segment stays ENQUEUED
        query = keda_query()
        version = f"application_version = '{config()['KEEL_APPLICATION_VERSION']}'"
        other = query.replace(version, "application_version = 'other'")
        with psycopg.connect(url) as conn:  # as KEDA sends it: plain SQL, outside SQLAlchemy
            row = conn.execute(query.encode()).fetchone()
            none = conn.execute(other.encode()).fetchone()
        assert row is not None and none is not None
        assert (row[0], none[0]) == (2.0, 0.0)
    finally:
        DurableEngine.close()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# -- the image ----------------------------------------------------------------------------------
def test_the_image_runs_keel_worker_as_non_root_without_a_healthcheck() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert not re.search(r"^HEALTHCHECK", dockerfile, re.M), "Kubernetes probes check the worker"
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim", dockerfile, re.M)
    final_stage = dockerfile.rsplit("\nFROM ", 1)[1]
    users = re.findall(r"^USER (\S+)$", final_stage, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert json.loads(re.findall(r"^ENTRYPOINT (.+)$", final_stage, re.M)[-1]) == ["keel"]
    assert json.loads(re.findall(r"^CMD (.+)$", final_stage, re.M)[-1]) == ["worker"]
    assert worker_container()["args"][0] == "worker"


def test_the_embedded_model_is_a_build_arg_on_by_default() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert re.findall(r"^ARG KEEL_EXTRAS=(.*)$", dockerfile, re.M) == ["local", "local"]
    assert 'spec=".[$KEEL_EXTRAS]"' in dockerfile
