cluster "demo" {
  provider "local" {}

  core {
    tls       = "no"
    task_user = "root:x"
  }

  pool "masters" {
    role  = "master"
    count = 1
  }
}
