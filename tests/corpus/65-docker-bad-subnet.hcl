cluster "c" {
  provider "docker" {
    subnet = "10.0.0.0"
  }
  pool "masters" {
    role  = "master"
    count = 1
  }
}
