cluster "c" {
  provider "local" {}
  pool "masters" {
    role  = "master"
    count = 1
  }
  pool {
    role  = "agent"
    count = 1
  }
}
