cluster "c" {
  provider "local" {}
  pool "masters" {
    role  = "master"
    count = 1
  }
  pool "a" "b" {
    role  = "agent"
    count = 1
  }
}
