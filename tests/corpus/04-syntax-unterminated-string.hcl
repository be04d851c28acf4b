cluster "c" {
  provider "local" {}
  pool "m" {
    role = "master
  }
}
