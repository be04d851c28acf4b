cluster "c" {
  # ÿþ
}
