# Node disks use encryption at host: the subscription needs the
# Microsoft.Compute/EncryptionAtHost feature registered once before apply
# (docs/DEPLOY.md step 1), or node pool creation fails.
resource "azurerm_kubernetes_cluster" "sluice" {
  name                = "${var.prefix}-aks"
  location            = azurerm_resource_group.sluice.location
  resource_group_name = azurerm_resource_group.sluice.name
  dns_prefix          = var.prefix
  kubernetes_version  = var.kubernetes_version
  sku_tier            = "Standard"

  # Workload identity: the OIDC issuer signs service account tokens that Entra
  # ID exchanges for tokens of the Sluice managed identity (identity.tf).
  oidc_issuer_enabled       = true
  workload_identity_enabled = true

  automatic_upgrade_channel = "patch"
  node_os_upgrade_channel   = "NodeImage"
  azure_policy_enabled      = true
  local_account_disabled    = true

  azure_active_directory_role_based_access_control {
    azure_rbac_enabled     = true
    tenant_id              = data.azurerm_client_config.current.tenant_id
    admin_group_object_ids = var.admin_group_object_ids
  }

  # Never open to the internet: only the listed ranges reach the API server.
  api_server_access_profile {
    authorized_ip_ranges = var.api_server_authorized_ip_ranges
  }

  # Upgrades and node image updates only in the weekly window.
  maintenance_window_auto_upgrade {
    frequency   = "Weekly"
    interval    = 1
    day_of_week = var.maintenance_window.day_of_week
    start_time  = var.maintenance_window.start_time
    duration    = var.maintenance_window.hours
    utc_offset  = "+00:00"
  }

  maintenance_window_node_os {
    frequency   = "Weekly"
    interval    = 1
    day_of_week = var.maintenance_window.day_of_week
    start_time  = var.maintenance_window.start_time
    duration    = var.maintenance_window.hours
    utc_offset  = "+00:00"
  }

  default_node_pool {
    name                         = "system"
    vm_size                      = var.system_vm_size
    vnet_subnet_id               = azurerm_subnet.aks.id
    auto_scaling_enabled         = true
    min_count                    = var.system_node_count.min
    max_count                    = var.system_node_count.max
    max_pods                     = 50
    os_disk_type                 = "Ephemeral"
    host_encryption_enabled      = true
    only_critical_addons_enabled = false
    zones                        = ["1", "2", "3"]
    temporary_name_for_rotation  = "systemtmp"
    node_labels = {
      "sluice.dev/pool" = "system"
    }

    upgrade_settings {
      max_surge = "33%"
    }
  }

  identity {
    type = "SystemAssigned"
  }

  network_profile {
    network_plugin    = "azure"
    network_policy    = "azure"
    load_balancer_sku = "standard"
  }

  oms_agent {
    log_analytics_workspace_id      = azurerm_log_analytics_workspace.sluice.id
    msi_auth_for_monitoring_enabled = true
  }

  key_vault_secrets_provider {
    secret_rotation_enabled = true
  }

  tags = var.tags
}

# The executor pool: autoscaled by the cluster autoscaler from the executor
# Deployment's pending pods (`sluice scale executors N` or the HPA), tainted so
# only executors land there (helm/values/production.yaml tolerates the taint).
resource "azurerm_kubernetes_cluster_node_pool" "executors" {
  name                    = "executors"
  kubernetes_cluster_id   = azurerm_kubernetes_cluster.sluice.id
  vm_size                 = var.executor_vm_size
  vnet_subnet_id          = azurerm_subnet.aks.id
  mode                    = "User"
  auto_scaling_enabled    = true
  min_count               = var.executor_node_count.min
  max_count               = var.executor_node_count.max
  max_pods                = 50
  os_disk_type            = "Ephemeral"
  host_encryption_enabled = true
  zones                   = ["1", "2", "3"]
  node_labels = {
    "sluice.dev/pool" = "executors"
  }
  node_taints = ["sluice.dev/executor=true:NoSchedule"]

  upgrade_settings {
    max_surge = "33%"
  }

  tags = var.tags
}
