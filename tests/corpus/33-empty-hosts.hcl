cluster "c" {
  provider "ssh" {}
  pool "masters" {
    role  = "master"
    hosts = []
  }
}
