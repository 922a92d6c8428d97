metrics {}
