cluster "c" {
  provider "local" {}
  pool "masters" {
    role  = "master"
    count = 1
  }
  core {
    version = file("no-such-file.txt")
  }
}
