# Converted by `dcform convert` from handwritten_v0.11-decomposed.main.tf.
# module "dcos-master-instances": dcos-terraform/masters/aws ~> 0.1.0
# module "dcos-privateagent-instances": dcos-terraform/private-agents/aws ~> 0.1.0
# module "dcos-publicagent-instances": dcos-terraform/public-agents/aws ~> 0.1.0
# Inputs with no place here are listed by `dcform convert` (stderr, or --json).

variable "num_masters" {
  default = 1
}

variable "num_private_agents" {
  default = 2
}

variable "num_public_agents" {
  default = 1
}

cluster "dcos-default-vpc" {
  provider "aws" {}

  ssh {
    user = "centos"
  }

  core {
    version = "bundled"
  }

  # module.dcos-master-instances: num_masters, aws_instance_type
  pool "masters" {
    role          = "master"
    count         = var.num_masters
    instance_type = "m5.xlarge"
  }

  # module.dcos-privateagent-instances: num_private_agents, aws_instance_type
  pool "agents" {
    role          = "agent"
    count         = var.num_private_agents
    instance_type = "m5.large"
  }

  # module.dcos-publicagent-instances: num_public_agents, aws_instance_type
  pool "public-agents" {
    role          = "public_agent"
    count         = var.num_public_agents
    instance_type = "m5.large"
  }
}
