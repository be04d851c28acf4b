# Converted by `dcform convert` from zivost_dcos-custom-setup-guide_genconf_config.yaml (DC/OS installer config).
# Host keys are trusted on first use and pinned in the state.
# Inputs with no place here are listed by `dcform convert` (stderr, or --json).

variable "ssh_key" {
  type        = string
  default     = "genconf/ssh-key"
  description = "Private key that logs in to every host (ssh_key_path of the installer config)"
}

cluster "trumpt-dcos" {
  provider "ssh" {}

  ssh {
    user        = "sysop"
    port        = 22
    private_key = var.ssh_key
  }

  core {
    version = "bundled"
  }

  # from master_list
  pool "masters" {
    role  = "master"
    hosts = ["10.2.0.4", "10.2.0.5", "10.5.0.5"]
  }

  # from agent_list
  pool "agents" {
    role  = "agent"
    hosts = ["10.5.0.4"]
  }

  # from public_agent_list
  pool "public-agents" {
    role  = "public_agent"
    hosts = ["10.4.0.4", "10.3.0.4"]
  }
}
