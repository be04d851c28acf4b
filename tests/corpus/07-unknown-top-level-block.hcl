clustr "c" {
}
