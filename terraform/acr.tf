resource "azurerm_container_registry" "sluice" {
  name                = local.acr_name
  resource_group_name = azurerm_resource_group.sluice.name
  location            = azurerm_resource_group.sluice.location
  sku                 = "Premium"
  admin_enabled       = false

  anonymous_pull_enabled  = false
  data_endpoint_enabled   = true
  zone_redundancy_enabled = true
  # Quarantine stays off: with it on, a pushed image cannot be pulled until
  # a scanner marks it passed, and this stack runs no scanner (scan in CI or
  # with Defender for Containers, which reads without quarantine).
  quarantine_policy_enabled = false
  retention_policy_in_days  = 30
  # Docker Content Trust cannot be enabled on new registries (Azure retired
  # it); sign images with Notation instead if signing is required.
  trust_policy_enabled = false

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
