cluster "c" {
  provider "local" {}
  pool "masters" {
    role  = "master"
    count = 1
  }
  service "web" {
    cmd  = "sleep 100"
    cpus = -1
    insances = 2
  }
}
