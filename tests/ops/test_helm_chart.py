"""The Helm chart, linted and rendered by Helm's own Go SDK (PyPI ``helm-python-sdk``, no cluster).

Rendered objects are validated against Kubernetes' JSON schemas (``kubernetes-validate``, strict:
unknown fields fail) for the oldest supported and a current Kubernetes. KEDA's ScaledObject is a
CRD those schemas do not hold: its fields are checked by hand below. The Deployment's env, with
the token resolved from the rendered Secret as the kubelet would, is loaded by the executor's own
config loader, so the chart and the config cannot drift apart.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from executor.config import load_config

CHART = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "remote-executor"
KUBE_VERSIONS = ("1.25.0", "1.33.0")
GMS_URL = "https://your-company.acryl.io/gms"
BASE: dict[str, Any] = {"datahub": {"gmsUrl": GMS_URL, "tokenSecret": {"name": "gms"}}}

Objects = dict[str, dict[str, Any]]


def values(**overrides: Any) -> dict[str, Any]:
    """BASE with top-level sections replaced or merged one level deep."""
    out: dict[str, Any] = {k: dict(v) for k, v in BASE.items()}
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def render(vals: dict[str, Any]) -> Objects:
    """``kind -> object`` of everything the chart renders with ``vals``."""
    with helm.Chart.load(CHART) as chart:
        manifests = chart.render(vals, name="rx", namespace="data", is_install=True)
    objects: Objects = {}
    for path, text in manifests.items():
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                assert doc["kind"] not in objects, f"two {doc['kind']} objects"
                objects[doc["kind"]] = doc
    return objects


def container(objects: Objects) -> dict[str, Any]:
    (only,) = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    return only


def env_of(objects: Objects) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(objects)["env"]}


def test_helm_lint_is_clean() -> None:
    report = helm.lint(CHART, values(), strict=True, kube_version="v1.30.0")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize(
    "vals",
    [
        values(),
        values(datahub={"token": "inline-token", "tokenSecret": {"name": "", "key": "token"}},
               networkPolicy={"enabled": True}, autoscaling={"hpa": {"enabled": True}},
               secretsMount={"enabled": True, "secretName": "recipe-secrets"},
               config={"pools": [{"id": "default"}, {"id": "emea"}]},
               proxy={"httpsProxy": "http://proxy.internal:3128", "noProxy": ".svc,.cluster.local"}),
    ],
    ids=["minimal", "everything"],
)
def test_every_object_is_valid_kubernetes(vals: dict[str, Any]) -> None:
    for kind, obj in render(vals).items():
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{kind} is not valid for Kubernetes {version}: {exc}")


def test_deployment_env_token_and_pool() -> None:
    objects = render(values(datahub={"poolId": "emea", "maxWorkers": 8}))
    env = env_of(objects)
    assert env["DATAHUB_GMS_URL"] == GMS_URL
    assert env["DATAHUB_GMS_TOKEN"] == {"secretKeyRef": {"name": "gms", "key": "token"}}
    assert env["DATAHUB_EXECUTOR_POOL_ID"] == "emea"
    assert env["DATAHUB_EXECUTOR_INGESTION_MAX_WORKERS"] == "8"
    assert env["REMOTE_EXECUTOR_OBSERVABILITY_HOST"] == "0.0.0.0"
    assert env["REMOTE_EXECUTOR_STATE_DIR"] == "/var/lib/remote-executor"
    assert env["INGESTION_DEPENDENCY_RESOLUTION_ENABLED"] == "false"
    assert "Secret" not in objects, "an existing Secret is referenced, not created"


def test_probes_port_and_grace_period() -> None:
    objects = render(values())
    c = container(objects)
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert c["ports"] == [{"name": "metrics", "containerPort": 9087, "protocol": "TCP"}]
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 150
    assert env_of(objects)["REMOTE_EXECUTOR_DRAIN_S"] == "120"
    assert objects["Service"]["spec"]["ports"][0]["port"] == 9087


def test_non_root_read_only_with_writable_tmp_and_state() -> None:
    objects = render(values(recipeUser={"enabled": False}))
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == 1000
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    c = container(objects)
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    for path in ("/tmp", "/var/lib/remote-executor"):
        assert "emptyDir" in volumes[mounts[path]], path


def test_by_default_recipes_run_as_another_user_with_five_capabilities() -> None:
    """docs/security.md: root with exactly what run_as needs; the recipe user gets none of it."""
    objects = render(values())
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == 0 and pod["securityContext"]["runAsNonRoot"] is False
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    c = container(objects)
    assert c["securityContext"]["capabilities"] == {
        "drop": ["ALL"], "add": ["SETUID", "SETGID", "KILL", "CHOWN", "DAC_OVERRIDE"]}
    assert c["securityContext"]["allowPrivilegeEscalation"] is False  # no_new_privs; setuid() still works
    env = env_of(objects)
    assert env["REMOTE_EXECUTOR_RUN_AS"] == "recipe"
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert env["REMOTE_EXECUTOR_WORK_DIR"] in mounts
    config = load_config(None, {**{k: v for k, v in env.items() if isinstance(v, str)},
                                "DATAHUB_GMS_TOKEN": "t"})
    assert config.pools[0].run_as is not None and config.pools[0].run_as.user == "recipe"
    assert str(config.work_dir) == "/var/lib/remote-executor-work"


def test_secrets_mount_and_proxy() -> None:
    objects = render(values(secretsMount={"enabled": True, "secretName": "recipe-secrets"},
                            proxy={"httpsProxy": "http://proxy.internal:3128", "noProxy": ".svc"}))
    env = env_of(objects)
    assert env["DATAHUB_EXECUTOR_FILE_SECRET_BASEDIR"] == "/mnt/secrets"
    assert env["HTTPS_PROXY"] == "http://proxy.internal:3128"
    assert env["NO_PROXY"] == ".svc"
    assert "HTTP_PROXY" not in env
    c = container(objects)
    assert {"name": "secrets", "mountPath": "/mnt/secrets", "readOnly": True} in c["volumeMounts"]


def test_network_policy_allows_dns_and_https_only() -> None:
    policy = render(values(networkPolicy={"enabled": True}))["NetworkPolicy"]["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    ports = [[p["port"] for p in rule["ports"]] for rule in policy["egress"]]
    assert ports == [[53, 53], [443]]
    assert policy["ingress"][0]["ports"] == [{"port": "metrics", "protocol": "TCP"}]


def test_keda_scaled_object_uses_the_executors_own_metrics() -> None:
    objects = render(values(autoscaling={"keda": {"enabled": True, "prometheusServer": "http://prom:9090",
                                                  "targetUtilization": "0.5", "pollingInterval": 15,
                                                  "cooldownPeriod": 900}}))
    scaled = objects["ScaledObject"]
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    assert spec["scaleTargetRef"] == {"name": objects["Deployment"]["metadata"]["name"]}
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (1, 5)
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "prometheus"
    meta = trigger["metadata"]
    assert meta["serverAddress"] == "http://prom:9090"
    assert 'remote_executor_busy_slots{pool="default"}' in meta["query"]
    assert 'remote_executor_capacity_slots{pool="default"}' in meta["query"]
    assert meta["threshold"] == "0.5" and meta["metricType"] == "Value"
    assert "replicas" not in objects["Deployment"]["spec"], "the autoscaler owns the replica count"


def test_hpa_scales_slowly_down() -> None:
    hpa = render(values(autoscaling={"hpa": {"enabled": True}}))["HorizontalPodAutoscaler"]["spec"]
    assert hpa["metrics"][0]["pods"]["metric"]["name"] == "remote_executor_busy_slots"
    assert hpa["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 300


def test_the_rendered_env_is_a_valid_executor_config(tmp_path: Path) -> None:
    """Resolve the env as the kubelet would (Secret -> value), add the mounted file, load it."""
    config = {"pools": [{"id": "default", "max_workers": 2}, {"id": "emea"}]}
    objects = render(values(datahub={"token": "t0ken-value", "tokenSecret": {"name": "", "key": "token"}},
                            config=config))
    secret = objects["Secret"]
    environ: dict[str, str] = {}
    for name, value in env_of(objects).items():
        if isinstance(value, dict):
            ref = value["secretKeyRef"]
            assert ref["name"] == secret["metadata"]["name"]
            environ[name] = base64.b64decode(secret["data"][ref["key"]]).decode()
        else:
            environ[name] = value
    config_file = tmp_path / "config.yaml"
    config_file.write_text(objects["ConfigMap"]["data"]["config.yaml"])
    assert environ["REMOTE_EXECUTOR_CONFIG"] == "/etc/remote-executor/config.yaml"
    loaded = load_config(config_file, environ)
    assert [p.id for p in loaded.pools] == ["default", "emea"]
    assert loaded.gms.resolved_token() == "t0ken-value"
    assert loaded.observability.host == "0.0.0.0"
    assert loaded.observability.port == 9087
    assert loaded.shutdown.drain_s == 120
    assert str(loaded.state_dir) == "/var/lib/remote-executor"
    assert all(p.venvs.dependency_resolution is False for p in loaded.pools)


def test_env_alone_is_a_valid_one_pool_config() -> None:
    environ = {k: v for k, v in env_of(render(values())).items() if isinstance(v, str)}
    environ["DATAHUB_GMS_TOKEN"] = "from-the-secret"
    loaded = load_config(None, environ)
    assert [p.id for p in loaded.pools] == ["default"]
    assert loaded.pools[0].max_workers == 4


@pytest.mark.parametrize(
    ("vals", "message"),
    [
        ({"datahub": {"tokenSecret": {"name": "gms"}}}, "datahub.gmsUrl is required"),
        ({"datahub": {"gmsUrl": "https://x.example/gms"}}, "tokenSecret.name (an existing Secret) or"),
        (values(datahub={"token": "t"}), "not both"),
        (values(drainSeconds=150), "terminationGracePeriodSeconds (150) must exceed drainSeconds (150)"),
        (values(autoscaling={"keda": {"enabled": True}, "hpa": {"enabled": True}}), "not both"),
        (values(secretsMount={"enabled": True}), "secretsMount.secretName or secretsMount.csi"),
    ],
)
def test_bad_values_fail_with_a_clear_message(vals: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmRenderError) as caught:
        render(vals)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("vals", "message"),
    [
        (values(replicas=2), "additional properties 'replicas' not allowed"),
        (values(datahub={"gmsUrl": "your-company.acryl.io"}), "/datahub/gmsUrl"),
        (values(observability={"port": 0}), "/observability/port"),
    ],
)
def test_schema_rejects_mistyped_values(vals: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmValuesError, match=message.replace("(", r"\(")):
        render(vals)
