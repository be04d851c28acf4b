# Converted by `dcform convert` from handwritten_advanced-http-bootstrap_config.yaml (DC/OS installer config).
# Host keys are trusted on first use and pinned in the state.
# Inputs with no place here are listed by `dcform convert` (stderr, or --json).

cluster "prod-dc-os" {
  provider "ssh" {}

  core {
    version = "bundled"
  }

  # from master_list
  pool "masters" {
    role  = "master"
    hosts = ["10.0.0.5", "10.0.0.6", "10.0.0.7"]
  }
}
