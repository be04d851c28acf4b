# hand-written: Terraform 0.11 syntax, the decomposed form (separate security-groups, iam, bootstrap, masters, private-agents, public-agents, lb-dcos and dcos-install-remote-exec modules, as in dcos-terraform's "default VPC" example)
variable "ssh_public_key" {
  description = <<EOF
SSH public key in authorized keys format
EOF
}

variable "dcos_version" {
  default = "1.12.1"
}

variable "cluster_name" {
  default = "dcos-default-vpc"
}

variable "num_masters" {
  default = 1
}

variable "num_private_agents" {
  default = 2
}

variable "num_public_agents" {
  default = 1
}

variable "admin_ips" {
  type = "list"
}

provider "aws" {}

resource "aws_key_pair" "deployer" {
  key_name   = "${var.cluster_name}-deployer-key"
  public_key = "${var.ssh_public_key}"
}

data "aws_vpc" "default" {
  default = true
}

locals {
  key_name                 = "${aws_key_pair.deployer.key_name}"
  instance_security_groups = ["${list(module.dcos-security-groups.internal, module.dcos-security-groups.admin)}"]
}

module "dcos-security-groups" {
  source  = "dcos-terraform/security-groups/aws"
  version = "~> 0.1.0"

  vpc_id       = "${data.aws_vpc.default.id}"
  cluster_name = "${var.cluster_name}"
  admin_ips    = ["${var.admin_ips}"]
}

module "dcos-iam" {
  source       = "dcos-terraform/iam/aws"
  version      = "~> 0.1.0"
  cluster_name = "${var.cluster_name}"
}

module "dcos-bootstrap-instance" {
  source  = "dcos-terraform/bootstrap/aws"
  version = "~> 0.1.0"

  cluster_name      = "${var.cluster_name}"
  aws_key_name      = "${local.key_name}"
  aws_instance_type = "m5.large"
}

module "dcos-master-instances" {
  source  = "dcos-terraform/masters/aws"
  version = "~> 0.1.0"

  cluster_name           = "${var.cluster_name}"
  aws_security_group_ids = ["${local.instance_security_groups}"]
  aws_key_name           = "${local.key_name}"
  aws_instance_type      = "m5.xlarge"

  num_masters = "${var.num_masters}"
}

module "dcos-privateagent-instances" {
  source  = "dcos-terraform/private-agents/aws"
  version = "~> 0.1.0"

  cluster_name      = "${var.cluster_name}"
  aws_key_name      = "${local.key_name}"
  aws_instance_type = "m5.large"

  num_private_agents = "${var.num_private_agents}"
}

module "dcos-publicagent-instances" {
  source  = "dcos-terraform/public-agents/aws"
  version = "~> 0.1.0"

  cluster_name      = "${var.cluster_name}"
  aws_key_name      = "${local.key_name}"
  aws_instance_type = "m5.large"

  num_public_agents = "${var.num_public_agents}"
}

module "dcos-lb" {
  source  = "dcos-terraform/lb-dcos/aws"
  version = "~> 0.2.0"

  cluster_name     = "${var.cluster_name}"
  master_instances = ["${module.dcos-master-instances.instances}"]
}

module "dcos-install" {
  source  = "dcos-terraform/dcos-install-remote-exec/null"
  version = "~> 0.1.0"

  bootstrap_ip       = "${module.dcos-bootstrap-instance.public_ip}"
  master_ips         = ["${module.dcos-master-instances.public_ips}"]
  num_masters        = "${var.num_masters}"
  num_private_agents = "${var.num_private_agents}"
  num_public_agents  = "${var.num_public_agents}"

  dcos_cluster_name = "${var.cluster_name}"
  dcos_version      = "${var.dcos_version}"

  dcos_ip_detect_contents = <<EOF
#!/bin/sh
curl -fsSL http://169.254.169.254/latest/meta-data/local-ipv4
EOF

  dcos_master_discovery          = "static"
  dcos_exhibitor_storage_backend = "static"
}

output "elb.masters_dns_name" {
  value = "${module.dcos-lb.masters_dns_name}"
}
