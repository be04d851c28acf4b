# The same cluster, one container per node on a per-cluster Docker network. The node image is built
# locally on first use (`dcform node-image build`); nothing is pulled from a registry.
#   dcform apply examples/docker.hcl
#   dcform status examples/docker.hcl          # health and resources as the master reports them
#   dcform ssh masters-1 examples/docker.hcl   # or: dcform exec agents-1 examples/docker.hcl -- ps aux
#   dcform destroy examples/docker.hcl         # or, with the state lost: dcform destroy --cluster docker
# tests/providers_docker.rs runs this file end to end.

variable "agents" {
  type        = number
  default     = 2
  description = "Number of private agents"
}

cluster "docker" {
  provider "docker" {
    image = "dcform-node:bookworm"
  }

  ssh {
    user = "root"
  }

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
}
