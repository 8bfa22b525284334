# ADLS Gen2: a StorageV2 account with the hierarchical namespace, reachable
# only from the AKS subnet (service endpoint) and listed IP ranges, with
# shared keys disabled so that Entra ID (workload identity) is the only way in.
resource "azurerm_storage_account" "lake" {
  name                     = local.storage_name
  resource_group_name      = azurerm_resource_group.sluice.name
  location                 = azurerm_resource_group.sluice.location
  account_kind             = "StorageV2"
  account_tier             = "Standard"
  account_replication_type = var.lake_replication_type
  is_hns_enabled           = true

  min_tls_version                   = "TLS1_2"
  https_traffic_only_enabled        = true
  shared_access_key_enabled         = false
  default_to_oauth_authentication   = true
  allow_nested_items_to_be_public   = false
  local_user_enabled                = false
  infrastructure_encryption_enabled = true

  network_rules {
    default_action             = "Deny"
    bypass                     = ["AzureServices", "Logging", "Metrics"]
    virtual_network_subnet_ids = [azurerm_subnet.aks.id]
    ip_rules                   = var.lake_allowed_ip_ranges
  }

  blob_properties {
    delete_retention_policy {
      days = 14
    }
    container_delete_retention_policy {
      days = 14
    }
  }

  sas_policy {
    expiration_period = "00.01:00:00"
    expiration_action = "Log"
  }

  # The lake holds every run and model: `terraform destroy` must not take it.
  lifecycle {
    prevent_destroy = true
  }

  tags = var.tags
}

# The lake filesystem, created through the management plane so the storage
# firewall does not block Terraform.
resource "azurerm_storage_container" "lake" {
  name                  = var.lake_container
  storage_account_id    = azurerm_storage_account.lake.id
  container_access_type = "private"

  lifecycle {
    prevent_destroy = true
  }
}

# Audit trail of lake reads, writes and deletes in Log Analytics.
resource "azurerm_monitor_diagnostic_setting" "lake_blob" {
  name                       = "${var.prefix}-lake-blob"
  target_resource_id         = "${azurerm_storage_account.lake.id}/blobServices/default"
  log_analytics_workspace_id = azurerm_log_analytics_workspace.sluice.id

  enabled_log {
    category = "StorageRead"
  }
  enabled_log {
    category = "StorageWrite"
  }
  enabled_log {
    category = "StorageDelete"
  }

  enabled_metric {
    category = "Transaction"
  }
}
