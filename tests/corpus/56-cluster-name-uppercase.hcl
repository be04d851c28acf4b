cluster "Demo" {
  provider "local" {}
  pool "masters" {
    role  = "master"
    count = 1
  }
}
