# Converted by `dcform convert` from terraform-aws-dcos_docs-published.main.tf.
# module "dcos": dcos-terraform/dcos/aws ~> 0.1.0
# Inputs with no place here are listed by `dcform convert` (stderr, or --json).

cluster "my-open-dcos" {
  provider "aws" {
    region = "us-east-1"
  }

  ssh {
    user        = "core"
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
