cluster "c" {
  provider "ssh" {}
  pool "masters" {
    role  = "master"
    hosts = ["192.0.2.10", "192.0.2.10"]
  }
}
