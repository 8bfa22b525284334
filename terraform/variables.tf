variable "subscription_id" {
  description = "Azure subscription id to deploy into."
  type        = string

  validation {
    condition     = can(regex("^[0-9a-fA-F-]{36}$", var.subscription_id))
    error_message = "subscription_id must be a GUID (az account show --query id -o tsv)."
  }
}

variable "prefix" {
  description = "Short lowercase prefix of every resource name (3-12 letters or digits); storage and registry names are derived from it and must be globally unique."
  type        = string
  default     = "sluice"

  validation {
    condition     = can(regex("^[a-z][a-z0-9]{2,11}$", var.prefix))
    error_message = "prefix must be 3-12 lowercase letters or digits, starting with a letter."
  }
}

variable "location" {
  description = "Azure region of every resource."
  type        = string
  default     = "westeurope"
}

variable "kubernetes_version" {
  description = "AKS Kubernetes version (minor, e.g. \"1.33\"); null takes the region's default."
  type        = string
  default     = null

  validation {
    condition     = var.kubernetes_version == null || can(regex("^1\\.[0-9]+(\\.[0-9]+)?$", var.kubernetes_version))
    error_message = "kubernetes_version must look like 1.33 or 1.33.2."
  }
}

variable "system_vm_size" {
  description = "VM size of the system pool (kube-system, the Sluice scheduler and drivers)."
  type        = string
  default     = "Standard_D4ds_v5"
}

variable "system_node_count" {
  description = "Minimum and maximum node count of the autoscaling system pool."
  type = object({
    min = number
    max = number
  })
  default = { min = 2, max = 4 }

  validation {
    condition     = var.system_node_count.min >= 1 && var.system_node_count.max >= var.system_node_count.min
    error_message = "system_node_count needs 1 <= min <= max."
  }
}

variable "executor_vm_size" {
  description = "VM size of the executor pool, one Sluice executor per node with the production values."
  type        = string
  default     = "Standard_E8ds_v5"
}

variable "executor_node_count" {
  description = "Minimum and maximum node count of the autoscaling executor pool (min may be 0 to scale to zero between runs)."
  type = object({
    min = number
    max = number
  })
  default = { min = 0, max = 10 }

  validation {
    condition     = var.executor_node_count.min >= 0 && var.executor_node_count.max >= 1 && var.executor_node_count.max >= var.executor_node_count.min && var.executor_node_count.max <= 100
    error_message = "executor_node_count needs 0 <= min <= max, 1 <= max <= 100."
  }
}

variable "vnet_address_space" {
  description = "Address space of the cluster virtual network."
  type        = string
  default     = "10.40.0.0/16"

  validation {
    condition     = can(cidrhost(var.vnet_address_space, 0))
    error_message = "vnet_address_space must be a CIDR block."
  }
}

variable "api_server_authorized_ip_ranges" {
  description = "CIDR ranges allowed to reach the AKS API server (your office, VPN or CI egress). Required: the API server is never open to all addresses."
  type        = list(string)

  validation {
    condition     = length(var.api_server_authorized_ip_ranges) > 0 && alltrue([for r in var.api_server_authorized_ip_ranges : can(cidrhost(r, 0)) && r != "0.0.0.0/0"])
    error_message = "api_server_authorized_ip_ranges needs at least one CIDR block, and not 0.0.0.0/0."
  }
}

variable "maintenance_window" {
  description = "Weekly window (UTC) in which AKS applies Kubernetes patch upgrades and node image updates; keep it clear of the training schedule."
  type = object({
    day_of_week = string
    start_time  = string
    hours       = number
  })
  default = {
    day_of_week = "Sunday"
    start_time  = "02:00"
    hours       = 4
  }

  validation {
    condition     = contains(["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"], var.maintenance_window.day_of_week) && can(regex("^([01][0-9]|2[0-3]):[0-5][0-9]$", var.maintenance_window.start_time)) && var.maintenance_window.hours >= 4 && var.maintenance_window.hours <= 24
    error_message = "maintenance_window needs a weekday name, an HH:MM start_time and 4-24 hours (AKS' minimum is 4)."
  }
}

variable "lake_allowed_ip_ranges" {
  description = "Public IP ranges (no private ranges) allowed through the lake's firewall besides the AKS subnet, e.g. the machine uploading training data."
  type        = list(string)
  default     = []
}

variable "admin_group_object_ids" {
  description = "Entra ID group object ids that get cluster-admin on AKS (Azure RBAC for Kubernetes)."
  type        = list(string)
  default     = []
}

variable "sluice_namespace" {
  description = "Kubernetes namespace of the Sluice Helm release."
  type        = string
  default     = "sluice"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", var.sluice_namespace))
    error_message = "sluice_namespace must be a DNS label."
  }
}

variable "sluice_service_account" {
  description = "ServiceAccount the Sluice pods run as (the chart's full name: the release name \"sluice\")."
  type        = string
  default     = "sluice"
}

variable "lake_container" {
  description = "Name of the ADLS Gen2 filesystem (container) holding the lake."
  type        = string
  default     = "lake"

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$", var.lake_container))
    error_message = "lake_container must be 3-63 lowercase letters, digits or dashes."
  }
}

variable "lake_replication_type" {
  description = "Replication of the lake storage account."
  type        = string
  default     = "GZRS"

  validation {
    condition     = contains(["LRS", "ZRS", "GRS", "RAGRS", "GZRS", "RAGZRS"], var.lake_replication_type)
    error_message = "lake_replication_type must be one of LRS, ZRS, GRS, RAGRS, GZRS, RAGZRS."
  }
}

variable "log_retention_days" {
  description = "Retention of the Log Analytics workspace that receives AKS container insights."
  type        = number
  default     = 30

  validation {
    condition     = var.log_retention_days >= 30 && var.log_retention_days <= 730
    error_message = "log_retention_days must be within 30..730."
  }
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = { project = "sluice" }
}
