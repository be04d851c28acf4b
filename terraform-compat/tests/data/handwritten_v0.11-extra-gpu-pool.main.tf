# hand-written: Terraform 0.11 syntax, module dcos-terraform/dcos/aws ~> 0.2.0 plus an extra GPU pool from private-agents/aws joined through additional_private_agent_ips (the shape of dcos-terraform's GPU examples)
provider "aws" {
  region = "${var.region}"
}

variable "region" {
  description = "AWS region"
  default     = "us-west-2"
}

variable "num_gpu_agents" {
  type    = "string"
  default = "2"
}

data "http" "whatismyip" {
  url = "http://whatismyip.akamai.com/"
}

locals {
  cluster_name = "GPU_Demo"
  agent_type   = "${lookup(map("small", "m5.large", "big", "m5.2xlarge"), "big")}"
}

module "dcos" {
  source  = "dcos-terraform/dcos/aws"
  version = "~> 0.2.0"

  providers = {
    aws = "aws"
  }

  cluster_name        = "${local.cluster_name}"
  ssh_public_key_file = "~/.ssh/dcos.pub"
  admin_ips           = ["${data.http.whatismyip.body}/32"]

  num_masters                  = "3"
  num_private_agents           = "1"
  num_public_agents            = "1"
  private_agents_instance_type = "${local.agent_type}"

  dcos_instance_os = "coreos_1855.5.0"
  dcos_variant     = "open"
  dcos_version     = "1.13.1"
  dcos_config      = <<EOF
telemetry_enabled: false
EOF

  additional_private_agent_ips = ["${concat(module.gpuagent.private_ips)}"]
}

module "gpuagent" {
  source  = "dcos-terraform/private-agents/aws"
  version = "~> 0.2.0"

  cluster_name           = "${local.cluster_name}"
  aws_subnet_ids         = ["${module.dcos.infrastructure.vpc.subnet_ids}"]
  aws_security_group_ids = ["${module.dcos.infrastructure.security_groups.internal}"]
  aws_key_name           = "${module.dcos.infrastructure.aws_key_name}"
  aws_instance_type      = "p2.xlarge"

  num_private_agents = "${var.num_gpu_agents}"
}

output "masters_dns_name" {
  value = "${module.dcos.masters-loadbalancer}"
}
