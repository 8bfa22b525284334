output "resource_group_name" {
  description = "Resource group holding every Sluice resource."
  value       = azurerm_resource_group.sluice.name
}

output "aks_name" {
  description = "AKS cluster name (az aks get-credentials --name ...)."
  value       = azurerm_kubernetes_cluster.sluice.name
}

output "aks_get_credentials" {
  description = "Command that writes the kubeconfig used by helm, kubectl and `sluice submit`."
  value       = "az aks get-credentials --resource-group ${azurerm_resource_group.sluice.name} --name ${azurerm_kubernetes_cluster.sluice.name} && kubelogin convert-kubeconfig -l azurecli"
}

output "oidc_issuer_url" {
  description = "OIDC issuer of the cluster (federated with the Sluice identity)."
  value       = azurerm_kubernetes_cluster.sluice.oidc_issuer_url
}

output "acr_login_server" {
  description = "Registry to push the Sluice image to (helm value image.repository = <this>/sluice)."
  value       = azurerm_container_registry.sluice.login_server
}

output "storage_account_name" {
  description = "Lake storage account (helm value azure.storageAccountName)."
  value       = azurerm_storage_account.lake.name
}

output "lake_url" {
  description = "Lake root for the pipeline configs' `lake:` key."
  value       = "abfss://${azurerm_storage_container.lake.name}@${azurerm_storage_account.lake.name}.dfs.core.windows.net/"
}

output "sluice_identity_client_id" {
  description = "Client id of the Sluice workload identity (helm value azure.workloadIdentity.clientId)."
  value       = azurerm_user_assigned_identity.sluice.client_id
}

output "tenant_id" {
  description = "Entra ID tenant of the identity."
  value       = data.azurerm_client_config.current.tenant_id
}
