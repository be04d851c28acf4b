cluster "c" {
  provider "docker" {
    imgae = "x"
  }
  pool "masters" {
    role  = "master"
    count = 1
  }
}
