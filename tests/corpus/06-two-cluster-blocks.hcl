cluster "c" {
  provider "local" {}
  pool "masters" {
    role  = "master"
    count = 1
  }
}
cluster "c" {
  provider "local" {}
  pool "masters" {
    role  = "master"
    count = 1
  }
}
