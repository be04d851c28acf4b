# Imported by `dcform import-tfstate` from handwritten_v4_dcos-aws.tfstate (5 instance(s)).
# The machines stay as Terraform made them: dcform installs dccore on them and leaves them running on destroy.

variable "ssh_user" {
  type        = string
  default     = "centos"
  description = "Login user of the imported machines"
}

variable "ssh_key" {
  type        = string
  default     = "~/.ssh/id_rsa"
  description = "Private key that logs in to the imported machines"
}

cluster "dcos-demo" {
  provider "ssh" {}

  ssh {
    user        = var.ssh_user
    private_key = var.ssh_key
  }

  core {
    version = "bundled"
  }

  # from module.dcos.module.dcos-infrastructure.module.dcos-master-instances.module.dcos-master-instances.aws_instance.instance
  pool "masters" {
    role  = "master"
    hosts = ["198.51.100.11"]
  }

  # from module.dcos.module.dcos-infrastructure.module.dcos-privateagent-instances.module.dcos-private-agent-instances.aws_instance.instance
  pool "agents" {
    role  = "agent"
    hosts = ["198.51.100.21", "172.12.0.22"]
  }

  # from aws_instance.gpu
  pool "gpu" {
    role  = "agent"
    hosts = ["198.51.100.41"]
  }

  # from module.dcos.module.dcos-infrastructure.module.dcos-publicagent-instances.module.dcos-public-agent-instances.aws_instance.instance
  pool "public-agents" {
    role  = "public_agent"
    hosts = ["198.51.100.31"]
  }
}
