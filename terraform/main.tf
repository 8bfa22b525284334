# AKS with a system pool and an autoscaling executor pool, ADLS Gen2 lake, ACR
# and the workload identity that lets Sluice pods reach the lake without keys.

data "azurerm_client_config" "current" {}

locals {
  # Storage and registry names are global and allow no dashes.
  compact_prefix = replace(var.prefix, "-", "")
  suffix         = substr(sha1("${data.azurerm_client_config.current.subscription_id}/${var.prefix}"), 0, 6)
  storage_name   = "${local.compact_prefix}lake${local.suffix}"
  acr_name       = "${local.compact_prefix}acr${local.suffix}"
  # The subject the AKS OIDC issuer writes into the Sluice pods' tokens.
  sluice_subject = "system:serviceaccount:${var.sluice_namespace}:${var.sluice_service_account}"
}

resource "azurerm_resource_group" "sluice" {
  name     = "${var.prefix}-rg"
  location = var.location
  tags     = var.tags
}

resource "azurerm_virtual_network" "sluice" {
  name                = "${var.prefix}-vnet"
  location            = azurerm_resource_group.sluice.location
  resource_group_name = azurerm_resource_group.sluice.name
  address_space       = [var.vnet_address_space]
  tags                = var.tags
}

resource "azurerm_subnet" "aks" {
  name                 = "aks-nodes"
  resource_group_name  = azurerm_resource_group.sluice.name
  virtual_network_name = azurerm_virtual_network.sluice.name
  address_prefixes     = [cidrsubnet(var.vnet_address_space, 4, 0)]
  # The lake's firewall admits this subnet through the storage service endpoint.
  service_endpoints = ["Microsoft.Storage", "Microsoft.ContainerRegistry"]
}

resource "azurerm_log_analytics_workspace" "sluice" {
  name                = "${var.prefix}-logs"
  location            = azurerm_resource_group.sluice.location
  resource_group_name = azurerm_resource_group.sluice.name
  sku                 = "PerGB2018"
  retention_in_days   = var.log_retention_days
  tags                = var.tags
}

# AKS manages its own rules on the node NICs; this subnet-level group keeps
# Azure's default deny-inbound-from-internet baseline explicit and auditable.
resource "azurerm_network_security_group" "aks" {
  name                = "${var.prefix}-aks-nsg"
  location            = azurerm_resource_group.sluice.location
  resource_group_name = azurerm_resource_group.sluice.name
  tags                = var.tags
}

resource "azurerm_subnet_network_security_group_association" "aks" {
  subnet_id                 = azurerm_subnet.aks.id
  network_security_group_id = azurerm_network_security_group.aks.id
}
