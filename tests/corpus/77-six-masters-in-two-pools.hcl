cluster "c" {
  provider "local" {}
  pool "masters" {
    role  = "master"
    count = 3
  }
  pool "more-masters" {
    role  = "master"
    count = 3
  }
}
