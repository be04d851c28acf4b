# Converted by `dcform convert` from handwritten_v0.11-extra-gpu-pool.main.tf.
# module "dcos": dcos-terraform/dcos/aws ~> 0.2.0
# module "gpuagent": dcos-terraform/private-agents/aws ~> 0.2.0
# Inputs with no place here are listed by `dcform convert` (stderr, or --json).

variable "region" {
  default     = "us-west-2"
  description = "AWS region"
}

variable "num_gpu_agents" {
  type    = "string"
  default = "2"
}

cluster "gpu-demo" {
  provider "aws" {
    region = var.region
  }

  ssh {
    user        = "core"
    private_key = "~/.ssh/dcos"
  }

  core {
    version = "bundled"
  }

  # module.dcos: num_masters
  pool "masters" {
    role          = "master"
    count         = 3
    instance_type = "m4.xlarge"
  }

  # module.dcos: num_private_agents, private_agents_instance_type
  pool "agents" {
    role          = "agent"
    count         = 1
    instance_type = "m5.2xlarge"
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
    instance_type = "p2.xlarge"
  }
}
