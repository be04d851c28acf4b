# hand-written: Terraform 0.12 syntax, module dcos-terraform/dcos/aws ~> 0.3.0 with counts and instance types as variables, a tags local, and extra private and public pools (the shape of dcos-terraform's 0.3 GPU example)
provider "aws" {
  region = var.region
}

variable "region" {
  type    = string
  default = "eu-central-1"
}

variable "cluster_name" {
  type        = string
  default     = "team-a"
  description = "Name of the cluster"
}

variable "num_masters" {
  type    = number
  default = 1
}

variable "num_private_agents" {
  type    = number
  default = 3
}

variable "gpu_agents_instance_type" {
  type    = string
  default = "p3.2xlarge"
}

variable "num_gpu_agents" {
  type    = number
  default = 1
}

variable "dcos_license_key_contents" {
  type    = string
  default = ""
}

locals {
  tags = {
    owner = "team-a"
  }
  prefix = "${var.cluster_name}-edge"
}

module "dcos" {
  source  = "dcos-terraform/dcos/aws"
  version = "~> 0.3.0"

  providers = {
    aws = aws
  }

  cluster_name        = var.cluster_name
  ssh_public_key_file = "~/.ssh/id_ed25519.pub"
  admin_ips           = ["198.51.100.0/24"]

  num_masters                  = var.num_masters
  num_private_agents           = var.num_private_agents
  num_public_agents            = 1
  masters_instance_type        = "m5.xlarge"
  private_agents_instance_type = "m5.large"

  dcos_instance_os          = "centos_7.6"
  dcos_variant              = "ee"
  dcos_version              = "2.0.3"
  dcos_license_key_contents = var.dcos_license_key_contents
  dcos_security             = "strict"

  additional_private_agent_ips = concat(module.gpuagent.private_ips)
  additional_public_agent_ips  = concat(module.edge.public_ips)

  tags = local.tags
}

module "gpuagent" {
  source  = "dcos-terraform/private-agents/aws"
  version = "~> 0.3.0"

  providers = {
    aws = aws
  }

  cluster_name    = var.cluster_name
  hostname_format = "%[3]s-gpuagent%[1]d-%[2]s"

  aws_subnet_ids         = module.dcos.infrastructure_vpc_subnet_ids
  aws_security_group_ids = [module.dcos.infrastructure_security_groups_internal]
  aws_key_name           = module.dcos.infrastructure_aws_key_name
  aws_instance_type      = var.gpu_agents_instance_type

  num_private_agents = var.num_gpu_agents

  tags = local.tags
}

module "edge" {
  source  = "dcos-terraform/public-agents/aws"
  version = "~> 0.3.0"

  cluster_name      = local.prefix
  aws_instance_type = "c5.large"
  num_public_agents = 2
}
