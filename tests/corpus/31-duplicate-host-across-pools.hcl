cluster "c" {
  provider "ssh" {}
  pool "masters" {
    role  = "master"
    hosts = ["192.0.2.10"]
  }
  pool "agents" {
    role  = "agent"
    hosts = ["192.0.2.11", "192.0.2.10"]
  }
}
