"""terraform/ is formatted, parses, and sets what the deployment relies on:
hierarchical namespace on the lake, workload identity on AKS, an autoscaling
executor pool, ACR pull for the kubelet, and documented, validated variables."""

from __future__ import annotations

import shutil
import subprocess

import hcl2
import pytest

from conftest import TERRAFORM


def _load_all() -> dict[str, list]:
    merged: dict[str, list] = {}
    for tf in sorted(TERRAFORM.glob("*.tf")):
        with tf.open() as fh:
            parsed = hcl2.load(fh)
        for block, items in parsed.items():
            merged.setdefault(block, []).extend(items)
    return merged


@pytest.fixture(scope="module")
def tf():
    return _load_all()


def _unquote(value):
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def resources(tf, rtype) -> dict[str, dict]:
    found = {}
    for item in tf.get("resource", []):
        for kind, named in item.items():
            if _unquote(kind) == rtype:
                for name, body in named.items():
                    found[_unquote(name)] = body
    return found


def attr(body, key):
    value = body[key]
    return _unquote(value)


def block(body, key) -> dict:
    value = body[key]
    return value[0] if isinstance(value, list) else value


def test_terraform_fmt_check():
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip(
            "no terraform binary on this machine (none is packaged on PyPI/npm for offline "
            "install); formatting is checked where terraform exists, e.g. CI images with it"
        )
    proc = subprocess.run(
        [terraform, "fmt", "-check", "-recursive", "-diff", str(TERRAFORM)], capture_output=True, text=True
    )
    assert proc.returncode == 0, f"terraform fmt -check failed:\n{proc.stdout}{proc.stderr}"


def test_lake_has_hierarchical_namespace_and_no_keys(tf):
    lake = resources(tf, "azurerm_storage_account")["lake"]
    assert attr(lake, "is_hns_enabled") is True
    assert attr(lake, "account_kind") == "StorageV2"
    assert attr(lake, "shared_access_key_enabled") is False
    assert attr(lake, "min_tls_version") == "TLS1_2"
    assert attr(block(lake, "network_rules"), "default_action") == "Deny"
    container = resources(tf, "azurerm_storage_container")["lake"]
    assert attr(container, "container_access_type") == "private"


def test_aks_has_workload_identity_and_autoscaling_pools(tf):
    aks = resources(tf, "azurerm_kubernetes_cluster")["sluice"]
    assert attr(aks, "oidc_issuer_enabled") is True
    assert attr(aks, "workload_identity_enabled") is True
    assert attr(aks, "local_account_disabled") is True
    system = block(aks, "default_node_pool")
    assert attr(system, "auto_scaling_enabled") is True
    pool = resources(tf, "azurerm_kubernetes_cluster_node_pool")["executors"]
    assert attr(pool, "auto_scaling_enabled") is True
    assert attr(pool, "mode") == "User"
    assert "${var.executor_node_count.max}" in str(pool["max_count"])
    assert any("sluice.dev/executor=true:NoSchedule" in str(t) for t in pool["node_taints"])


def test_workload_identity_is_federated_with_the_sluice_service_account(tf):
    cred = resources(tf, "azurerm_federated_identity_credential")["sluice"]
    assert "oidc_issuer_url" in str(cred["issuer"])
    assert [_unquote(a) for a in cred["audience"]] == ["api://AzureADTokenExchange"]
    assert "sluice_subject" in str(cred["subject"])
    local_subject = next(l["sluice_subject"] for l in tf["locals"] if "sluice_subject" in l)
    assert "system:serviceaccount:${var.sluice_namespace}:${var.sluice_service_account}" in local_subject
    roles = resources(tf, "azurerm_role_assignment")
    lake_role = roles["sluice_lake"]
    assert attr(lake_role, "role_definition_name") == "Storage Blob Data Contributor"
    assert "azurerm_user_assigned_identity.sluice.principal_id" in str(lake_role["principal_id"])
    acr_pull = roles["aks_acr_pull"]
    assert attr(acr_pull, "role_definition_name") == "AcrPull"
    assert "kubelet_identity" in str(acr_pull["principal_id"])


def test_acr_has_no_admin_user(tf):
    acr = resources(tf, "azurerm_container_registry")["sluice"]
    assert attr(acr, "admin_enabled") is False
    assert attr(acr, "anonymous_pull_enabled") is False


def test_variables_have_descriptions_and_validation(tf):
    variables = {_unquote(k): v for item in tf["variable"] for k, v in item.items()}
    assert len(variables) >= 10
    for name, body in variables.items():
        assert len(_unquote(body.get("description", ""))) > 10, f"variable {name} needs a description"
    validated = {n for n, b in variables.items() if "validation" in b}
    assert {"subscription_id", "prefix", "executor_node_count", "lake_container"} <= validated


def test_outputs_feed_the_helm_values(tf):
    outputs = {_unquote(k): v for item in tf["output"] for k, v in item.items()}
    for name in ("acr_login_server", "storage_account_name", "sluice_identity_client_id", "lake_url", "aks_get_credentials"):
        assert name in outputs, name
        assert _unquote(outputs[name].get("description", "")), name
    assert "dfs.core.windows.net" in str(outputs["lake_url"]["value"])


def test_acr_images_are_pullable_after_push(tf):
    """Quarantine without a scanner blocks every pull; DCT cannot be enabled on new registries."""
    acr = resources(tf, "azurerm_container_registry")["sluice"]
    assert attr(acr, "quarantine_policy_enabled") is False
    assert attr(acr, "trust_policy_enabled") is False


def test_state_backend_is_remote(tf):
    backends = [b for t in tf["terraform"] for b in t.get("backend", [])]
    assert backends and [_unquote(k) for k in backends[0]] == ["azurerm"], backends
    example = (TERRAFORM / "backend.hcl.example").read_text()
    for key in ("resource_group_name", "storage_account_name", "container_name", "key", "use_azuread_auth"):
        assert key in example, key


def test_api_server_is_never_public_and_upgrades_wait_for_the_window(tf):
    variables = {_unquote(k): v for item in tf["variable"] for k, v in item.items()}
    ranges = variables["api_server_authorized_ip_ranges"]
    assert "default" not in ranges, "no default: an empty list would leave the API server public"
    assert "length(var.api_server_authorized_ip_ranges) > 0" in str(ranges["validation"])
    aks = resources(tf, "azurerm_kubernetes_cluster")["sluice"]
    assert "var.api_server_authorized_ip_ranges" in str(block(aks, "api_server_access_profile")["authorized_ip_ranges"])
    for window in ("maintenance_window_auto_upgrade", "maintenance_window_node_os"):
        body = block(aks, window)
        assert attr(body, "frequency") == "Weekly", window
        assert "var.maintenance_window" in str(body["day_of_week"]), window


def test_the_lake_cannot_be_destroyed_by_terraform(tf):
    for rtype in ("azurerm_storage_account", "azurerm_storage_container"):
        lake = resources(tf, rtype)["lake"]
        assert block(lake, "lifecycle")["prevent_destroy"] is True, rtype
