cluster "c" {
  provider "local" {}
  core {
    config = {
      timeout = "2s"
      retries = "x" * 3
    }
  }
  pool "masters" {
    role  = "master"
    count = 1
  }
}
