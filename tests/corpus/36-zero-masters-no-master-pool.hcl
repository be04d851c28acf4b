cluster "c" {
  provider "local" {}
  pool "agents" {
    role  = "agent"
    count = 2
  }
}
