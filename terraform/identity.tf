# Workload identity: the Sluice ServiceAccount (annotated with this identity's
# client id by the chart) is federated with a user-assigned managed identity
# that holds Storage Blob Data Contributor on the lake, and nothing else.
resource "azurerm_user_assigned_identity" "sluice" {
  name                = "${var.prefix}-workload"
  location            = azurerm_resource_group.sluice.location
  resource_group_name = azurerm_resource_group.sluice.name
  tags                = var.tags
}

resource "azurerm_federated_identity_credential" "sluice" {
  name                = "${var.prefix}-k8s-${var.sluice_namespace}"
  resource_group_name = azurerm_resource_group.sluice.name
  parent_id           = azurerm_user_assigned_identity.sluice.id
  audience            = ["api://AzureADTokenExchange"]
  issuer              = azurerm_kubernetes_cluster.sluice.oidc_issuer_url
  subject             = local.sluice_subject
}

resource "azurerm_role_assignment" "sluice_lake" {
  scope                            = azurerm_storage_account.lake.id
  role_definition_name             = "Storage Blob Data Contributor"
  principal_id                     = azurerm_user_assigned_identity.sluice.principal_id
  skip_service_principal_aad_check = true
}

# Whoever runs `terraform apply` may upload training data and read results.
resource "azurerm_role_assignment" "operator_lake" {
  scope                = azurerm_storage_account.lake.id
  role_definition_name = "Storage Blob Data Contributor"
  principal_id         = data.azurerm_client_config.current.object_id
}
