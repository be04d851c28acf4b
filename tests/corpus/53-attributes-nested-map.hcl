cluster "c" {
  provider "local" {}
  pool "masters" {
    role  = "master"
    count = 1
  }
  pool "agents" {
    role       = "agent"
    count      = 1
    attributes = { rack = { row = 1 } }
  }
}
