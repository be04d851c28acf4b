# A small cluster on this machine: every node is a process sandbox, no root and no Docker needed.
#   dcform plan examples/local.hcl
#   dcform apply examples/local.hcl -var agents=3

variable "agents" {
  type        = number
  default     = 2
  description = "Number of private agents"
}

cluster "local" {
  provider "local" {}

  core {
    version = "bundled"
    config = {
      agent_ping_timeout = "2s"
    }
  }

  pool "masters" {
    role  = "master"
    count = 1
  }

  pool "agents" {
    role  = "agent"
    count = var.agents
    attributes = {
      rack = "r1"
    }
  }

  pool "public" {
    role  = "public_agent"
    count = 1
  }

  # A framework principal: dcform makes its secret (`dcform output principal_secret_files`); its
  # frameworks may subscribe only with role "analytics" and run tasks only as "nobody".
  principal "analytics" {
    roles = ["analytics"]
    users = ["nobody"]
  }
}
