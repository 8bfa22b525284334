terraform {
  required_version = ">= 1.6.0"

  # Remote state in an Azure storage account of its own (not the lake),
  # configured at init time: terraform init -backend-config=backend.hcl
  # (backend.hcl.example lists the keys). State holds resource ids, never keys:
  # the backend authenticates with Entra ID (use_azuread_auth).
  backend "azurerm" {}

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
