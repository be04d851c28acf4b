cluster "c" {
  provider "dockr" {}
  pool "masters" {
    role  = "master"
    count = 1
  }
}
