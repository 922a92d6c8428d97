worker {
  id = "node-7
}
