cluster "c" {
  provider "local" {}
  pool "masters" {
    role  = "master"
    count = 1
  }
  core {
    config {
      a = 1
    }
  }
}
