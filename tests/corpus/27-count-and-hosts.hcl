cluster "c" {
  provider "local" {}
  pool "masters" {
    role  = "master"
    count = 1
  }
  pool "agents" {
    role  = "agent"
    count = 1
    hosts = ["192.0.2.1"]
  }
}
