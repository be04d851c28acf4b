cluster "demo" {
  provider "local" {}

  pool "masters" {
    role  = "master"
    count = 1
  }

  principal "analytics" {
    roles = ["analytics", "has space"]
  }

  principal "analytics" {
    users = ["nobody"]
  }
}
