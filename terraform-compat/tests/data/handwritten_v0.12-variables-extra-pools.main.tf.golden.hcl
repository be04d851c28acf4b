# Converted by `dcform convert` from handwritten_v0.12-variables-extra-pools.main.tf.
# module "dcos": dcos-terraform/dcos/aws ~> 0.3.0
# module "gpuagent": dcos-terraform/private-agents/aws ~> 0.3.0
# module "edge": dcos-terraform/public-agents/aws ~> 0.3.0
# Inputs with no place here are listed by `dcform convert` (stderr, or --json).

variable "region" {
  type    = string
  default = "eu-central-1"
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

cluster "team-a" {
  provider "aws" {
    region = var.region
  }

  ssh {
    user        = "centos"
    private_key = "~/.ssh/id_ed25519"
  }

  core {
    version = "bundled"
  }

  # module.dcos: num_masters, masters_instance_type
  pool "masters" {
    role          = "master"
    count         = var.num_masters
    instance_type = "m5.xlarge"
  }

  # module.dcos: num_private_agents, private_agents_instance_type
  pool "agents" {
    role          = "agent"
    count         = var.num_private_agents
    instance_type = "m5.large"
  }

  # module.dcos: num_public_agents
  pool "public-agents" {
    role          = "public_agent"
    count         = 1
    instance_type = "m4.xlarge"
  }

  # module.gpuagent: num_private_agents, aws_instance_type
  pool "gpuagent" {
    role          = "agent"
    count         = var.num_gpu_agents
    instance_type = var.gpu_agents_instance_type
  }

  # module.edge: num_public_agents, aws_instance_type
  pool "edge" {
    role          = "public_agent"
    count         = 2
    instance_type = "c5.large"
  }
}
