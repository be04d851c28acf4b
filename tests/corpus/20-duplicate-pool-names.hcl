cluster "c" {
  provider "local" {}
  pool "masters" {
    role  = "master"
    count = 1
  }
  pool "masters" {
    role  = "agent"
    count = 1
  }
}
