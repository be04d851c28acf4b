cluster "c" {
  provider {}
  pool "masters" {
    role  = "master"
    count = 1
  }
}
