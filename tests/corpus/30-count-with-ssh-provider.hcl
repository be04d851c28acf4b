cluster "c" {
  provider "ssh" {}
  pool "masters" {
    role  = "master"
    count = 1
  }
}
