cluster "c" {
  provider "local" {}
  pool "masters" {
    role  = "master"
    count = 1
  }
  pol "agents" {
    role  = "agent"
    count = 2
  }
}
