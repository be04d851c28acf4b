# A cluster on AWS EC2: dcform makes the network (VPC, one subnet per zone, internet gateway, route
# table, security groups), imports your SSH public key as a key pair, launches each pool with as few
# RunInstances calls as EC2 allows, bootstraps every instance over SSH at its public address (private
# agents through the first master) and installs dccore; the nodes talk to each other at their private
# addresses. Everything is tagged dcform:cluster = "aws-demo".
#   dcform plan examples/aws.hcl
#   dcform apply examples/aws.hcl -var admin_cidrs='["203.0.113.7/32"]'
#   dcform apply --infra-only examples/aws.hcl   # machines and network only; the next apply bootstraps
#   dcform apply examples/aws.hcl -var agents=8  # scale: only the new instances are launched
#   dcform destroy examples/aws.hcl              # terminates the instances, then deletes the network
#   dcform destroy --cluster aws-demo --provider aws   # state lost: everything found by tag
# Credentials, region and endpoint come the AWS way (AWS_PROFILE / `aws sso login` / AWS_ACCESS_KEY_ID,
# AWS_REGION, AWS_ENDPOINT_URL_EC2), as with the AWS CLI; `region` below wins over AWS_REGION when set.
# tests/providers_aws.rs applies this file (--infra-only) against a local moto server.

variable "region" {
  type        = string
  default     = ""
  description = "AWS region; empty: AWS_REGION or the profile's region"
}

variable "ssh_key" {
  type        = string
  default     = "~/.ssh/id_ed25519"
  description = "Private key dcform logs in with; its .pub beside it is imported as the cluster's key pair"
}

variable "admin_cidrs" {
  type        = list(string)
  default     = ["0.0.0.0/0"]
  description = "Who may reach SSH (22) and the master API (5050): narrow this to your own address"
}

variable "agents" {
  type        = number
  default     = 5
  description = "Private agents"
}

variable "private_agents" {
  type        = bool
  default     = false
  description = "Private agents without a public address, reached through the first master (or ssh.bastion)"
}

cluster "aws-demo" {
  provider "aws" {
    region        = var.region
    instance_type = "m5.xlarge" # default for pools that set none: 4 vCPUs, 16 GiB
    # The newest Ubuntu server image for amd64 published by Canonical; pin a release with e.g.
    # "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*", or set ami = "ami-..." (per region).
    ami_name   = "ubuntu/images/hvm-ssd*/ubuntu-*-amd64-server-*"
    ami_owners = ["099720109477"]
    # Spread over the region's first three zones; list them to choose: ["us-east-1a", "us-east-1b"].
    availability_zones = []
    vpc_cidr           = "10.0.0.0/16" # one /20 per zone; or subnet_ids = ["subnet-..."] to use yours
    admin_cidrs        = var.admin_cidrs
    root_volume_size   = 40 # GiB
    root_volume_type   = "gp3"
    extra_volumes      = [] # e.g. [100] for one 100 GiB gp3 volume at /dev/sdf on every node
    # true: private agents get no public address; dcform's SSH reaches them through the first master
    # (or ssh { bastion = "user@host" }), and the nodes always talk to each other at private addresses.
    private_agents = var.private_agents
  }

  ssh {
    user        = "ubuntu" # the login of Canonical's images
    private_key = var.ssh_key
    port        = 22
  }

  core {
    version = "bundled"
  }

  pool "masters" {
    role          = "master"
    count         = 3
    instance_type = "m5.large"
  }

  pool "agents" {
    role  = "agent"
    count = var.agents
    attributes = {
      zone_spread = "true"
    }
  }

  pool "public" {
    role          = "public_agent"
    count         = 1
    instance_type = "m5.large" # ports 80, 443 and 31000-32000 open to the world
  }
}
