terraform {
  required_version = ">= 1.6.0"

  required_providers {
    azurerm = {
      source  = "hashicorp/azurerm"
      version = "~> 4.20"
    }
  }
}

provider "azurerm" {
  features {}

  # The storage account has shared keys disabled: data-plane calls made by
  # Terraform authenticate with Entra ID, like the Sluice pods do.
  storage_use_azuread = true
  subscription_id     = var.subscription_id
}
