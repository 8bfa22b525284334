resource "azurerm_container_registry" "sluice" {
  name                = local.acr_name
  resource_group_name = azurerm_resource_group.sluice.name
  location            = azurerm_resource_group.sluice.location
  sku                 = "Premium"
  admin_enabled       = false

  anonymous_pull_enabled    = false
  data_endpoint_enabled     = true
  zone_redundancy_enabled   = true
  quarantine_policy_enabled = true
  retention_policy_in_days  = 30
  trust_policy_enabled      = true

  network_rule_set {
    default_action = "Allow"
  }

  tags = var.tags
}

# AKS pulls the Sluice image with its kubelet identity: no imagePullSecrets.
resource "azurerm_role_assignment" "aks_acr_pull" {
  scope                            = azurerm_container_registry.sluice.id
  role_definition_name             = "AcrPull"
  principal_id                     = azurerm_kubernetes_cluster.sluice.kubelet_identity[0].object_id
  skip_service_principal_aad_check = true
}
