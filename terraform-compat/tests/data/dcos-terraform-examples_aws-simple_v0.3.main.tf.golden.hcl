# Converted by `dcform convert` from dcos-terraform-examples_aws-simple_v0.3.main.tf.
# module "dcos": dcos-terraform/dcos/aws ~> 0.3.0
# Inputs with no place here are listed by `dcform convert` (stderr, or --json).

cluster "generic-dcos-ee-demo" {
  provider "aws" {}

  ssh {
    user        = "centos"
    private_key = "~/.ssh/id_rsa"
  }

  core {
    version = "bundled"
  }

  # module.dcos: num_masters
  pool "masters" {
    role          = "master"
    count         = 1
    instance_type = "m4.xlarge"
  }

  # module.dcos: num_private_agents
  pool "agents" {
    role          = "agent"
    count         = 2
    instance_type = "m4.xlarge"
  }

  # module.dcos: num_public_agents
  pool "public-agents" {
    role          = "public_agent"
    count         = 1
    instance_type = "m4.xlarge"
  }
}
