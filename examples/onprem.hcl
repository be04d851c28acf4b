# Existing machines reached over SSH. The addresses below are placeholders from TEST-NET-1
# (192.0.2.0/24, RFC 5737), which is never routed: replace them with your hosts.
#   dcform plan examples/onprem.hcl
#   dcform apply examples/onprem.hcl -var ssh_key=~/.ssh/id_ed25519
#   dcform destroy examples/onprem.hcl   # uninstalls: stops dccore, removes every file it installed
# Host keys are trusted on first use and pinned in the state; a host whose key later changes is refused.
# tests/providers_ssh.rs runs this file against containers standing in for the four hosts.

variable "ssh_key" {
  type        = string
  default     = "~/.ssh/id_ed25519"
  description = "Private key that logs in to every host"
}

cluster "onprem" {
  provider "ssh" {}

  ssh {
    user        = "root"
    private_key = var.ssh_key
    port        = 22
  }

  core {
    version = "bundled"
  }

  pool "masters" {
    role  = "master"
    hosts = ["192.0.2.10"]
  }

  pool "agents" {
    role  = "agent"
    hosts = ["192.0.2.20", "192.0.2.21"]
    attributes = {
      rack = "r1"
    }
  }

  pool "public" {
    role  = "public_agent"
    hosts = ["192.0.2.30"]
  }
}
