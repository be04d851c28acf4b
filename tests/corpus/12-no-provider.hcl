cluster "c" {
  pool "masters" {
    role  = "master"
    count = 1
  }
}
