cluster "c" {
  provider "local" {}
  pool "masters" {
    role  = "master"
    count = 1
  }
  pool "agents" {
    role  = "agent"
    count = 1000000
  }
}
