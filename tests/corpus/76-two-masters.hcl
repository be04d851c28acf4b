cluster "c" {
  provider "local" {}
  pool "masters" {
    role  = "master"
    count = 2
  }
}
